"""The verifier accepts well-formed IR and rejects each kind of malformed IR, saying what
is wrong and where, with the printed IR around the fault."""

from __future__ import annotations

import numpy as np
import pytest

from ir import (
    Builder, DType, Eqn, Function, TensorType, Value, VerifyError, parse_function, verify,
)
from op_samples import all_samples

F3 = TensorType(DType.f32, (3,))


@pytest.mark.parametrize("sample", all_samples(), ids=lambda s: s.id)
def test_op_table_functions_verify(sample):
    verify(sample.function())


def build():
    """f(x) = reduce_sum(exp(x) * x), with locations on the first two equations."""
    b = Builder("f")
    x = b.param(F3)
    with b.at("model.py:1"):
        y = b.exp(x)
    with b.at("model.py:2"):
        z = b.mul(y, x)
    w = b.reduce_sum(z, axes=[0])
    return b.finish([w])


def fusion_function(body_builder=None) -> Function:
    """g(x) = fusion(x) { exp }, as a hand-made equation with a body."""
    b = Builder("g")
    x = b.param(F3)
    inner = Builder("fusion")
    p = inner.param(F3)
    body = inner.finish([inner.exp(p)]) if body_builder is None else body_builder(inner, p, x)
    out = Value(body.outputs[0].type)
    b.eqns.append(Eqn("fusion", (x,), (out,), {"kind": "loop"}, "model.py:9", body))
    return b.finish([out])


def reject(fn, *parts, pass_name=None) -> str:
    with pytest.raises(VerifyError) as info:
        verify(fn, pass_name=pass_name)
    message = str(info.value)
    for part in parts:
        assert part in message, message
    return message


def marked_line(message: str) -> str:
    (line,) = [ln for ln in message.splitlines() if ln.endswith("<--- HERE")]
    return line.removesuffix("  <--- HERE").strip()


def test_valid_functions_pass():
    verify(build())
    verify(fusion_function())


def test_message_names_pass_equation_loc_and_shows_the_ir():
    fn = build()
    fn.eqns[1].outputs[0].type = TensorType(DType.f32, (4,))
    message = reject(fn, pass_name="simplify")
    first = message.splitlines()[0]
    assert first == (
        "after pass 'simplify': eqn 1 'mul' (model.py:2): result 0 (%2) is recorded as f32[4] "
        "but the type rule of 'mul' gives f32[3]"
    )
    assert marked_line(message) == "%2 = mul %1, %0 : f32[4]  # model.py:2"
    assert "func @f(%0: f32[3]) -> (f32[]) {" in message and message.rstrip().endswith("}")


def test_window_is_ten_lines_each_side():
    b = Builder("long")
    x = b.param(F3)
    for _ in range(40):
        x = b.neg(x)
    fn = b.finish([x])
    fn.eqns[20].attrs = {"bogus": 1}
    message = reject(fn, "eqn 20 'neg'", "unknown attribute(s) bogus")
    shown = message.splitlines()[1:]
    assert shown[0].strip() == "..." and shown[-1].strip() == "..."
    assert len(shown) == 2 + 21
    assert marked_line(message).startswith("%21 = neg %20 {bogus=1}")


def test_undefined_operand():
    fn = build()
    stray = Value(F3)
    fn.eqns[1].inputs = (fn.eqns[1].inputs[0], stray)
    message = reject(fn, f"eqn 1 'mul' (model.py:2): operand 1 (%?{stray.id}) is not defined "
                         "anywhere in the function")
    assert marked_line(message).startswith("%2 = mul %1, %?")


def test_use_before_definition():
    fn = build()
    fn.eqns[0], fn.eqns[1] = fn.eqns[1], fn.eqns[0]
    reject(fn, "eqn 0 'mul' (model.py:2): operand 0 (%2) is used before its definition by "
               "eqn 1 'exp' (model.py:1)")


def test_value_defined_twice():
    fn = build()
    fn.eqns[1].outputs = fn.eqns[0].outputs
    reject(fn, "eqn 1 'mul' (model.py:2): result 0", "is already defined by eqn 0 'exp' "
               "(model.py:1); each value is defined exactly once")
    fn = build()
    fn.params = fn.params * 2
    message = reject(fn, "@f: parameter 1 (%1) is already defined by parameter 0 of @f")
    assert marked_line(message).startswith("func @f(")
    fn = build()
    fn.eqns[0].outputs = tuple(fn.params)
    reject(fn, "eqn 0 'exp' (model.py:1): result 0 (%1) is already defined by parameter 0")


def test_function_result_not_defined():
    fn = build()
    fn.outputs = [Value(F3)]
    message = reject(fn, "return of @f: result 0", "is not defined anywhere")
    assert marked_line(message).startswith("return %?")


def test_unknown_op_names_close_matches():
    fn = build()
    fn.eqns[1].op = "mull"
    reject(fn, "eqn 1 'mull' (model.py:2): unknown op 'mull'; did you mean mul?")


def test_wrong_arity():
    fn = build()
    fn.eqns[1].inputs = fn.eqns[1].inputs[:1]
    reject(fn, "eqn 1 'mul' (model.py:2): the op's rules reject it: mul: expected 2 operand(s), "
               "got 1")


def test_attribute_schema():
    fn = build()
    fn.eqns[2].attrs = {}
    reject(fn, "eqn 2 'reduce_sum': the op's rules reject it: reduce_sum: missing attribute(s) "
               "axes")
    fn.eqns[2].attrs = {"axes": (0,), "keepdims": True}
    reject(fn, "unknown attribute(s) keepdims; expected: axes")
    fn.eqns[2].attrs = {"axes": (5,)}
    reject(fn, "reduce_sum: axis 5 is out of range for operand f32[3]")


@pytest.mark.parametrize("stored", [[0], (np.int64(0),), (True,)], ids=["list", "numpy", "bool"])
def test_attrs_must_be_normalised(stored):
    fn = build()
    fn.eqns[2].attrs = {"axes": stored}
    reject(fn, "eqn 2 'reduce_sum': ")
    if isinstance(stored, list) or isinstance(stored[0], np.integer):
        reject(fn, "attrs are not normalised", "normal form {'axes': (0,)}")


def test_type_rule_must_reproduce_each_output():
    fn = build()
    fn.eqns[0].outputs[0].type = TensorType(DType.f64, (3,))
    reject(fn, "eqn 0 'exp' (model.py:1): result 0 (%1) is recorded as f64[3] but the type rule "
               "of 'exp' gives f32[3]")
    fn = build()
    fn.eqns[2].outputs = (*fn.eqns[2].outputs, Value(F3))
    reject(fn, "the type rule of 'reduce_sum' gives 1 result(s) (f32[]) but the equation has 2")


def test_body_sees_only_its_own_values():
    fn = fusion_function(lambda inner, p, x: inner.finish([inner.mul(p, x)]))
    message = reject(fn, "eqn 0 'mul' in the body of eqn 0 'fusion' (model.py:9): operand 1 (%0) "
                         "is defined in another region, by parameter 0 of @g")
    assert marked_line(message) == "%3 = mul %2, %0 : f32[3]"


def test_body_types_must_match_the_equation():
    fn = fusion_function()
    fn.eqns[0].body.params[0].type = TensorType(DType.f64, (3,))
    reject(fn, "eqn 0 'fusion' (model.py:9): body parameter types (f64[3]) differ from the "
               "operand types (f32[3])")
    fn = fusion_function(lambda inner, p, x: inner.finish([inner.reduce_sum(p, axes=[0])]))
    fn.eqns[0].outputs[0].type = F3
    message = reject(fn, "return of body of eqn 0 'fusion' (model.py:9): the body returns (f32[]) "
                         "but the equation's result types are (f32[3])")
    assert marked_line(message) == "return %3"


def test_unregistered_op_needs_a_body():
    fn = fusion_function()
    fn.eqns[0].body = None
    reject(fn, "eqn 0 'fusion' (model.py:9): unknown op 'fusion'",
           "only an equation with a body may use an unregistered op")


def test_parsed_bodies_verify():
    fn = parse_function(
        "func @g(%0: f32[3]) -> (f32[3]) {\n"
        "  %1 = fusion %0 {kind=\"loop\"} : f32[3] body(%2: f32[3]) {\n"
        "    %3 = exp %2 : f32[3]\n"
        "    return %3\n"
        "  }\n"
        "  return %1\n"
        "}\n"
    )
    verify(fn)


def _garbage_cases():
    """(name, mutate(fn), expected message part): IR a broken pass could produce."""

    def setter(path, value):
        def mutate(fn):
            target = fn
            for step in path[:-1]:
                target = target[step] if isinstance(step, int) else getattr(target, step)
            setattr(target, path[-1], value)

        return mutate

    inputs, outputs, attrs = ("eqns", 1, "inputs"), ("eqns", 1, "outputs"), ("eqns", 2, "attrs")
    return [
        ("operand int", setter(inputs, (3, None)), "operand 0 is not an IR Value but int 3"),
        ("operand list", setter(inputs, ([1], [2])), "operand 0 is not an IR Value but list"),
        ("inputs None", setter(inputs, None), "inputs must be a list or tuple"),
        ("outputs empty", setter(outputs, ()), "an equation needs at least one result"),
        ("attrs None", setter(("eqns", 1, "attrs"), None), "attrs must be a dict, got NoneType"),
        ("attrs list", setter(attrs, [("axes", (0,))]), "attrs must be a dict"),
        ("attr set", setter(attrs, {"axes": {0}}), "axes={0} must be a list of integers"),
        ("attr dtype", setter(attrs, {"axes": (DType.f32,)}), "must be an integer"),
        ("op None", setter(("eqns", 1, "op"), None), "op must be a non-empty string, got None"),
        ("loc int", setter(("eqns", 1, "loc"), 12), "loc must be None or a one-line string"),
        ("loc newline", setter(("eqns", 1, "loc"), "a\nb"), "loc must be None or a one-line"),
        ("body int", setter(("eqns", 1, "body"), 5), "body must be a Function or None, got int"),
        ("params None", setter(("params",), None), "@f: parameters must be a list or tuple"),
        ("param str", setter(("params",), ["x"]), "@f: parameter 0 is not an IR Value but str"),
        ("outputs str", setter(("outputs",), "abc"), "results must be a list or tuple, got str"),
        ("type str", setter(("eqns", 0, "outputs"), (Value("f32[3]"),)),
         "result 0 (%1) has type 'f32[3]', not a TensorType"),
        ("eqn str", lambda fn: fn.eqns.append("garbage"), "equation 3 is a str, not an Eqn"),
        ("eqns None", setter(("eqns",), None), "equations must be a list or tuple"),
    ]


GARBAGE = _garbage_cases()


@pytest.mark.parametrize("name, mutate, part", GARBAGE, ids=[case[0] for case in GARBAGE])
def test_garbage_is_a_verify_error_never_a_crash(name, mutate, part):
    fn = build()
    mutate(fn)
    reject(fn, part, pass_name="broken")


def test_not_a_function():
    reject("func @f", "expected a Function, got str")


def test_fusion_attribute_values_must_be_printable():
    fn = fusion_function()
    fn.eqns[0].attrs = {"kind": np.float64(1.5)}
    reject(fn, "attribute 'kind'=np.float64(1.5) is not an attribute value")
    fn.eqns[0].attrs = {"kind": [1, 2]}
    reject(fn, "attribute 'kind'=[1, 2] is not an attribute value")
