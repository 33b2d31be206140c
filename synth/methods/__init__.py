"""Generation methods, one class each (see base.py); importing this package registers them."""

from .base import GenerationMethod, MethodConfig, get_method, method_names, register_method  # noqa: F401
from . import self_instruct, responses, judge, evol_instruct, cot, grounded  # noqa: F401,E402  (registration)
