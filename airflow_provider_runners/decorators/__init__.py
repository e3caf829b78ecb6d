"""TaskFlow decorators: ``@task.runner`` (``runner.py``)."""
