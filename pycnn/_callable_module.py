"""Modules that are also their main function: pycnn.convert(model),
pycnn.summary(model, size), pycnn.verify(name).

`import pycnn.summary` (which `python -m pycnn summary` does) binds the
attribute pycnn.summary to the module, hiding any function of that name in
the package; so the module itself is made callable (Python's documented
module __class__ assignment), and pycnn.summary(...) works whichever way it
was reached, while pycnn.summary.summary and the module's other names stay.
"""
import sys
import types


def make_callable(module_name, function):
    module = sys.modules[module_name]

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return function(*args, **kwargs)

    CallableModule.__call__.__doc__ = function.__doc__
    CallableModule.__name__ = f"{module_name}.CallableModule"
    module.__class__ = CallableModule
