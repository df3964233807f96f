"""onecommit's invoke tasks: a thin composition of the task modules in `onecommit/tasks/`."""

from invoke import Collection

from onecommit.tasks import platform

namespace = Collection()
for module in (platform,):
    for task_ in module.__dict__.values():
        if hasattr(task_, "body") and getattr(task_, "__module__", "") == module.__name__:
            namespace.add_task(task_)
