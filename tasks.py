"""onecommit's invoke tasks: a thin composition of the task modules in `onecommit/tasks/`."""

from invoke import Collection, Task

from onecommit.tasks import dev, platform

namespace = Collection()
for module in (platform, dev):
    for value in vars(module).values():
        if isinstance(value, Task) and value.body.__module__ == module.__name__:
            namespace.add_task(value)
