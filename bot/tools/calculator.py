"""Arithmetic parsed from the AST, never `eval`: numbers, + - * / // % **, unary signs,
parentheses and a few math functions. Everything else (names, attributes, calls to anything
outside the list, subscripts, comprehensions ...) is refused, and so are exponents and results
too big to be worth computing.
"""

from __future__ import annotations

import ast
import math
import operator
import unicodedata
from collections.abc import Callable
from typing import Any

from .registry import ToolError

MAX_EXPRESSION_CHARS = 300
MAX_EXPONENT = 10_000
MAX_DIGITS = 1_000
MAX_FACTORIAL = 400  # 400! has 869 digits

_LOG10_2 = math.log10(2)

Number = int | float

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _factorial(x: Number) -> int:
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    if not isinstance(x, int) or x < 0:
        raise ToolError("阶乘只接受非负整数 / factorial takes a non-negative integer")
    if x > MAX_FACTORIAL:
        raise ToolError(f"阶乘参数过大（上限 {MAX_FACTORIAL}）/ factorial argument above {MAX_FACTORIAL}")
    return math.factorial(x)


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil,
    "exp": math.exp, "log": math.log, "log2": math.log2, "log10": math.log10, "ln": math.log,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "factorial": _factorial,
    "min": min, "max": max,
}

_SYMBOLS = str.maketrans({"×": "*", "÷": "/", "^": "**", "−": "-", "–": "-", "（": "(", "）": ")", "，": ","})


def normalise(expression: str) -> str:
    """Full-width digits and signs to ASCII; ×, ÷ and ^ (power, as people write it) to Python."""
    text = unicodedata.normalize("NFKC", expression or "").translate(_SYMBOLS)
    return text.replace("***", "**").strip().rstrip("=＝").strip()


def _digits(n: int) -> int:
    return int(abs(n).bit_length() * _LOG10_2) + 1


def _check(value: Any) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToolError("结果不是实数 / the result is not a real number")
    if isinstance(value, int) and _digits(value) > MAX_DIGITS:
        raise ToolError(f"结果超过 {MAX_DIGITS} 位 / the result has more than {MAX_DIGITS} digits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("结果溢出或不是有限数 / the result overflows or is not finite")
    return value


def _power(base: Number, exp: Number) -> Number:
    if abs(exp) > MAX_EXPONENT:
        raise ToolError(f"指数过大（上限 {MAX_EXPONENT}）/ exponent above {MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exp, int) and exp > 0 and abs(base) > 1:
        # estimate the size before computing: 9**9999 would take a while and print 9,543 digits
        if exp * math.log10(abs(base)) > MAX_DIGITS:
            raise ToolError(f"结果超过 {MAX_DIGITS} 位 / the result has more than {MAX_DIGITS} digits")
    if isinstance(base, (int, float)) and base < 0 and isinstance(exp, float) and not exp.is_integer():
        raise ToolError("负数的非整数次方不是实数 / a negative number to a fractional power is not real")
    return base ** exp


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ToolError(f"不支持的常量 / unsupported literal: {node.value!r}"[:120])
        return _check(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check(_power(left, right))
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise ToolError("除数不能为零 / division by zero")
        return _check(_BINOPS[type(node.op)](left, right))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise ToolError(f"不支持名称 {node.id!r}：只能计算数字表达式 / names are not allowed: {node.id!r}")
    if isinstance(node, ast.Call):
        fn = node.func
        if not isinstance(fn, ast.Name) or fn.id not in FUNCTIONS:
            what = fn.id if isinstance(fn, ast.Name) else type(fn).__name__
            raise ToolError(f"不支持调用 {what!r}；可用函数 / allowed functions: {', '.join(FUNCTIONS)}")
        if node.keywords or not 1 <= len(node.args) <= 2:
            raise ToolError(f"{fn.id}() 的参数不对 / wrong arguments for {fn.id}()")
        args = [_eval(a) for a in node.args]
        try:
            return _check(FUNCTIONS[fn.id](*args))
        except (ValueError, TypeError, OverflowError) as e:
            raise ToolError(f"{fn.id}() 无法计算 / {fn.id}() failed: {e}") from None
    if isinstance(node, ast.Attribute):
        raise ToolError("不支持属性访问 / attributes are not allowed")
    raise ToolError(f"不支持的语法 / unsupported syntax: {type(node).__name__}")


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression, or a ToolError saying what is wrong."""
    text = normalise(expression)
    if not text:
        raise ToolError("表达式为空 / the expression is empty")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"表达式过长（上限 {MAX_EXPRESSION_CHARS} 字符）/ expression longer than "
                        f"{MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ToolError(f"无法解析表达式 / cannot parse the expression: {text[:80]!r}") from None
    try:
        return _eval(tree)
    except OverflowError:
        raise ToolError("结果溢出 / the result overflows") from None
    except ZeroDivisionError:
        raise ToolError("除数不能为零 / division by zero") from None
    except RecursionError:
        raise ToolError("表达式嵌套过深 / the expression is nested too deeply") from None


def format_number(value: Number) -> int | float:
    """Integers stay exact; floats lose binary noise (0.1+0.2 → 0.3) and whole floats become ints."""
    if isinstance(value, int):
        return value
    if value.is_integer() and abs(value) < 1e15:
        return int(value)
    return float(f"{value:.12g}")


def calculate(expression: str) -> dict[str, Any]:
    value = format_number(evaluate(expression))
    return {"expression": normalise(expression), "result": value}
