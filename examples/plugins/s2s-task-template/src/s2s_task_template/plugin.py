"""Registers the ``text_regression`` task with s2s."""

from s2s import hookimpl

from .task import TextRegression


@hookimpl
def register_tasks(register):
    register("text_regression", TextRegression, aliases=("regression",))
