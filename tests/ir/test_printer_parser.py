"""The text format round-trips: print(parse(print(f))) == print(f), and parse errors help."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ir import (
    Builder, DType, Eqn, Function, ParseError, TensorType, Value, interpret, parse_function,
    print_function, verify,
)
from op_samples import all_samples

SAMPLES = all_samples()


def round_trip(fn: Function, header: bool = False) -> Function:
    text = print_function(fn, header=header)
    parsed = parse_function(text)
    assert print_function(parsed, header=header) == text
    return parsed


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_every_op_sample_round_trips(sample):
    fn = sample.function()
    parsed = round_trip(fn)
    round_trip(fn, header=True)
    verify(parsed)
    # Same attrs and types means same semantics: the interpreter agrees on both.
    args = sample.arrays(np.random.default_rng(0))
    for want, got in zip(interpret(fn, args), interpret(parsed, args), strict=True):
        np.testing.assert_array_equal(want, got)


def test_parsed_function_has_fresh_values_and_normalised_attrs():
    fn = parse_function(
        "func @f(%0: f32[3,4]) -> (f32[4]) {\n"
        "  %1 = reduce_sum %0 {axes=[0]} : f32[4]\n"
        "  return %1\n"
        "}\n"
    )
    (eqn,) = fn.eqns
    assert fn.name == "f" and eqn.inputs == (fn.params[0],) and fn.outputs == [eqn.output]
    assert eqn.attrs == {"axes": (0,)} and isinstance(eqn.attrs["axes"], tuple)
    assert eqn.loc is None and eqn.body is None


def test_locations_including_grad_suffix():
    b = Builder("f")
    x = b.param(TensorType(DType.f32, (2,)))
    with b.at("model.py:12"):
        y = b.exp(x)
    with b.at("model.py:12 (grad)"):
        z = b.mul(y, y)
    fn = b.finish([z])
    parsed = round_trip(fn)
    assert [e.loc for e in parsed.eqns] == ["model.py:12", "model.py:12 (grad)"]
    # Without locations the text still parses, to equations without a loc.
    bare = parse_function(print_function(fn, show_locs=False))
    assert [e.loc for e in bare.eqns] == [None, None]


FUSION = """\
# xla-py ir v1
func @step(%0: f32[4], %1: f32[4]) -> (f32[4], f32[4]) {
  %2, %3 = fusion %0, %1 {kernel="k\\"0\\n#1", widths=[1,2]} : f32[4], f32[4] body(%4: f32[4], %5: f32[4]) {  # model.py:3 (grad)
    %6 = add %4, %5 : f32[4]
    %7 = exp %6 : f32[4]  # model.py:4
    return %6, %7
  }
  %8 = mul %2, %3 : f32[4]
  return %8, %3
}
"""


def test_body_and_multiple_results():
    fn = parse_function(FUSION)
    assert print_function(fn, header=True) == FUSION
    fusion = fn.eqns[0]
    assert fusion.op == "fusion" and len(fusion.outputs) == 2 and fusion.loc == "model.py:3 (grad)"
    assert fusion.attrs == {"kernel": 'k"0\n#1', "widths": (1, 2)}
    body = fusion.body
    assert isinstance(body, Function) and body.name == "fusion"
    assert [e.op for e in body.eqns] == ["add", "exp"] and body.eqns[1].loc == "model.py:4"
    assert fn.eqns[1].inputs == fusion.outputs
    verify(fn)
    x, y = np.arange(4, dtype=np.float32), np.ones(4, dtype=np.float32)
    out, e = interpret(fn, [x, y])
    np.testing.assert_allclose(e, np.exp(x + y), rtol=1e-6)
    np.testing.assert_allclose(out, (x + y) * np.exp(x + y), rtol=1e-6)


def test_nested_bodies_round_trip():
    text = FUSION.replace(
        "    %7 = exp %6 : f32[4]  # model.py:4\n",
        "    %7 = fusion %6 : f32[4] body(%8: f32[4]) {\n"
        "      %9 = exp %8 : f32[4]\n"
        "      return %9\n"
        "    }\n",
    ).replace("%8 = mul", "%10 = mul").replace("return %8, %3", "return %10, %3")
    fn = parse_function(text)
    assert print_function(fn, header=True) == text
    assert fn.eqns[0].body.eqns[1].body.eqns[0].op == "exp"
    verify(fn)


SPECIAL = [float("inf"), float("-inf"), float("nan"), -0.0, 1e-300, 1.5e300, 0.1, -2.5e-08]


def test_special_floats():
    b = Builder("f")
    c = b.constant(np.array(SPECIAL), DType.f64)
    s = b.constant(float("-inf"), DType.f32, (2,))
    fn = b.finish([c, s])
    text = print_function(fn)
    assert "[inf,-inf,nan,-0.0,1e-300,1.5e+300,0.1,-2.5e-08]" in text
    parsed = round_trip(fn)
    values = parsed.eqns[0].attrs["value"]
    assert all(type(v) is float for v in values)
    assert values[:2] == (math.inf, -math.inf) and math.isnan(values[2])
    assert math.copysign(1.0, values[3]) == -1.0 and values[4:] == tuple(SPECIAL[4:])
    assert parsed.eqns[1].attrs["value"] == -math.inf


def test_attribute_kinds_of_every_spelling():
    fn = parse_function(
        "func @f(%0: f32[2]) -> (f32[2]) {\n"
        '  %1 = fusion %0 {a=-3, b=2.0, c=true, d=false, e=i64, f=bool, g="", h=[], i=[[1],[2.5]],'
        " j=nan, k=+inf, l=1e+16} : f32[2] body(%2: f32[2]) {\n"
        "    return %2\n"
        "  }\n"
        "  return %1\n"
        "}\n"
    )
    attrs = fn.eqns[0].attrs
    assert list(attrs) == sorted(attrs)
    assert attrs["a"] == -3 and type(attrs["a"]) is int
    assert attrs["b"] == 2.0 and type(attrs["b"]) is float
    assert attrs["c"] is True and attrs["d"] is False
    assert attrs["e"] is DType.i64 and attrs["f"] is DType.bool
    assert attrs["g"] == "" and attrs["h"] == () and attrs["i"] == ((1,), (2.5,))
    assert math.isnan(attrs["j"]) and attrs["k"] == math.inf and attrs["l"] == 1e16


def test_comments_blank_lines_and_crlf():
    text = (
        "\n# a dump of @f\n\nfunc @f(%0: f32[2]) -> (f32[2]) {\r\n"
        "  # a comment inside the function\n\n"
        "  %1 = neg %0 : f32[2]  # model.py:1\r\n"
        "  return %1\n}\n# trailing comment\n\n"
    )
    fn = parse_function(text)
    assert [e.op for e in fn.eqns] == ["neg"] and fn.eqns[0].loc == "model.py:1"


def test_empty_function_and_names_not_in_print_order():
    fn = parse_function("func @nothing() -> () {\n  return\n}\n")
    assert fn.params == [] and fn.eqns == [] and fn.outputs == []
    assert print_function(fn) == "func @nothing() -> () {\n  return \n}\n"
    # Hand-written IR may use any names; printing renumbers them.
    named = parse_function(
        "func @g(%x: f32[2]) -> (f32[2]) {\n  %y.1 = exp %x : f32[2]\n  return %y.1\n}"
    )
    assert "%1 = exp %0 : f32[2]" in print_function(named)


@pytest.mark.parametrize("name", ["grad(f)", "<lambda>", "two words", "a->b", "x{y}", "",
                                  "g(x) -> (y) {"])
def test_function_names_are_free_text(name):
    b = Builder(name)
    fn = b.finish([b.neg(b.param(TensorType(DType.f32, (2,))))])
    assert round_trip(fn).name == name


def _fusion_with_string(s: str) -> Function:
    b = Builder("f")
    x = b.param(TensorType(DType.f32, (2,)))
    body_builder = Builder("fusion")
    p = body_builder.param(x.type)
    body = body_builder.finish([body_builder.neg(p)])
    out = Value(x.type)
    b.eqns.append(Eqn("fusion", (x,), (out,), {"name": s}, None, body))
    return b.finish([out])


@given(st.text(max_size=30))
@settings(max_examples=60, deadline=None)
def test_any_string_attribute_round_trips(s):
    fn = _fusion_with_string(s)
    text = print_function(fn)
    assert text.count("\n") == 7  # escapes keep the equation on one line
    assert parse_function(text).eqns[0].attrs["name"] == s
    round_trip(fn)


# -- random small graphs built with the Builder from the op table ----------------------------

_LOCS = st.none() | st.builds("{}.py:{}".format, st.sampled_from(["model", "a b", "x#y"]),
                              st.integers(1, 999)).flatmap(
    lambda loc: st.sampled_from([loc, loc + " (grad)"]))
# Function names are free text on the signature line (front ends use "grad(f)", "<lambda>").
_NAMES = st.text(st.characters(exclude_characters="\n\r"), max_size=10)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def small_functions(draw, allow_body: bool = True) -> Function:
    """A function applying 1-6 op samples to parameters and earlier results of equal type."""
    b = Builder(draw(_NAMES))
    pool: list[Value] = []
    for _ in range(draw(st.integers(1, 6))):
        with b.at(draw(_LOCS)):
            if draw(st.integers(0, 5)) == 0:  # a literal with special floats
                values = draw(st.lists(_FLOATS, min_size=1, max_size=4))
                pool.append(b.constant(values, DType.f64, (len(values),)))
                continue
            sample = draw(st.sampled_from(SAMPLES))
            args = []
            for t in sample.inputs:
                same = [v for v in pool if v.type == t]
                if same and draw(st.booleans()):
                    args.append(draw(st.sampled_from(same)))
                else:
                    args.append(b.param(t))
                    pool.append(args[-1])
            pool.extend(b.emit(sample.op, args, sample.attrs))
    pool.extend(b.params)
    outputs = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
    fn = b.finish(outputs)
    if not (allow_body and draw(st.booleans())):
        return fn
    # Wrap it as the body of a fusion equation in an outer function.
    fn.name = "fusion"
    outer = Builder(draw(_NAMES))
    params = [outer.param(p.type) for p in fn.params]
    results = tuple(Value(v.type) for v in fn.outputs)
    outer.eqns.append(Eqn("fusion", tuple(params), results, {"n": len(fn.eqns)}, draw(_LOCS), fn))
    return outer.finish(list(results))


@given(small_functions(), st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_graphs_round_trip(fn, header):
    verify(fn)
    parsed = round_trip(fn, header=header)
    verify(parsed)
    assert [e.op for e in parsed.eqns] == [e.op for e in fn.eqns]
    assert [e.loc for e in parsed.eqns] == [e.loc for e in fn.eqns]


# -- parse errors --------------------------------------------------------------------------

GOOD = "func @f(%0: f32[3]) -> (f32[3]) {\n  %1 = mul %0, %0 : f32[3]\n  return %1\n}\n"


def _replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


PARSE_ERRORS = [
    # (text, line number, substrings of the message)
    (_replace("mul", "mull"), 2, ["unknown op 'mull'", "did you mean mul"]),
    (_replace("%1 = mul %0, %0 : f32[3]", "%1 = mul %0, %0 : f32[4]"), 2,
     ["mul: the type rule gives f32[3] but the line says f32[4]"]),
    (_replace("%0, %0", "%0 %0"), 2, ["expected ':' and the result types, got '%0'"]),
    (_replace("%0, %0", "%0, %7"), 2, ["value %7 is not defined"]),
    (_replace("%1 = mul", "%0 = mul"), 2, ["value %0 is already defined on line 1"]),
    (_replace("-> (f32[3])", "-> (f32[4])"), 3, ["returns (f32[3])", "declares (f32[4])"]),
    (_replace("%0: f32[3]", "%0: f16[3]"), 1, ["malformed tensor type 'f16[3]'"]),
    (_replace("%0: f32[3]", "%0: f32"), 1, ["expected a tensor type such as f32[4,3], got 'f32'"]),
    (_replace("mul %0, %0", "reduce_sum %0 {axes=[0], keep=true}"), 2,
     ["reduce_sum: unknown attribute(s) keep"]),
    (_replace("mul %0, %0", "reduce_sum %0"), 2, ["reduce_sum: missing attribute(s) axes"]),
    (_replace("mul %0, %0", "cast %0 {dtype=\"f32}"), 2, ["unterminated string"]),
    (_replace("mul %0, %0", "cast %0 {dtype=f32, dtype=f32}"), 2,
     ["attribute dtype is given twice"]),
    (_replace("mul %0, %0", "cast %0 {dtype=f99}"), 2, ["expected a number, true/false, a dtype"]),
    (_replace("mul %0, %0", "mul %0"), 2, ["mul: expected 2 operand(s), got 1"]),
    (_replace("mul %0, %0 : f32[3]", "mul %0, %0 : f32[3], f32[3]"), 2,
     ["1 result(s) but 2 result type(s)"]),
    (_replace("  return %1\n", ""), 3, ["expected 'return' before the closing '}'"]),
    (_replace("}\n", ""), 3, ["unexpected end of input", "opened on line 1"]),
    (GOOD + "func @g() -> () {\n", 5, ["expected nothing after the closing '}'"]),
    (_replace("return %1", "return %1\n  %2 = neg %1 : f32[3]"), 4,
     ["expected '}' after 'return'"]),
    (_replace("func @f", "fn @f"), 1, ["expected 'func @name(...) -> (...) {'"]),
    (_replace("  %1", "  1"), 2, ["expected an equation '%n = op ...', 'return' or '}'"]),
    (_replace("%1 = mul", "%1 = mul $"), 2, ["unexpected '$'"]),
    ("# xla-py ir v2\n" + GOOD, 1, ["unsupported IR format version"]),
    ("\n# only a comment\n", 2, ["no function"]),
    (_replace("mul %0, %0", 'fusion %0 {s="\\q"}'), 2, ["unknown escape '\\q'"]),
]


@pytest.mark.parametrize("text, number, parts", PARSE_ERRORS, ids=lambda x: None)
def test_parse_errors_name_line_text_and_expectation(text, number, parts):
    with pytest.raises(ParseError) as info:
        parse_function(text)
    message = str(info.value)
    assert message.startswith(f"line {number}: ")
    for part in parts:
        assert part in message
    # The offending line is quoted under the message.
    lines = text.split("\n")
    assert f"  {number} | {lines[number - 1].rstrip()}" in message


def test_parse_error_points_at_the_column():
    with pytest.raises(ParseError) as info:
        parse_function(_replace("%0, %0", "%0, %7"))
    _, quoted, caret = str(info.value).split("\n")
    assert quoted[caret.index("^")] == "%" and quoted[caret.index("^") + 1] == "7"


def test_body_sees_only_its_own_values():
    text = FUSION.replace("%6 = add %4, %5", "%6 = add %4, %0")
    with pytest.raises(ParseError, match="value %0 .defined on line 2. is not visible here"):
        parse_function(text)


def test_unregistered_op_needs_a_body_and_body_types_must_match():
    with pytest.raises(ParseError, match="only an equation with a body may use an unregistered op"):
        parse_function(_replace("mul %0, %0", "fusion %0, %0"))
    wrong_param = FUSION.replace("body(%4: f32[4]", "body(%4: f64[4]")
    with pytest.raises(ParseError, match=r"line 3: body parameters have types \(f64\[4\], f32"):
        parse_function(wrong_param)
    wrong_result = FUSION.replace("return %6, %7", "return %6")
    with pytest.raises(ParseError, match=r"line 6: the body returns \(f32\[4\]\) but its equation"):
        parse_function(wrong_result)
