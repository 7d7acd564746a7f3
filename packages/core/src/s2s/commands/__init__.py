"""The ``s2s train / predict / serve`` commands: every task on its standard file format, no
Python to write. They reach tasks only through the registry and :class:`s2s.task.Task`."""
