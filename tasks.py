"""onecommit's invoke tasks: a thin composition of every task module in `onecommit/tasks/`."""

import importlib
import pkgutil

from invoke import Collection, Task

import onecommit.tasks

namespace = Collection()
for info in pkgutil.iter_modules(onecommit.tasks.__path__):
    module = importlib.import_module(f"onecommit.tasks.{info.name}")
    for value in vars(module).values():
        if isinstance(value, Task) and value.body.__module__ == module.__name__:
            namespace.add_task(value)
