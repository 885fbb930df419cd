#!/usr/bin/env python
"""Coverage-guided fuzzing of every record parser and the image decode path (atheris).

    .venv/bin/pip install atheris
    .venv/bin/python scripts/fuzz.py -max_total_time=600      # libFuzzer options pass through
    .venv/bin/python scripts/fuzz.py --hypothesis 20000        # no atheris: hypothesis, N examples per target

The property is the one the pipeline relies on: whatever bytes arrive, a
parser raises its own error type (RecordError, ImageRejected, FeatureError)
or returns a value; it never crashes, hangs, or raises anything else.  The
suite's hypothesis tests check the same property briefly on every run; this
script runs it for as long as you like.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def targets():
    """(name, function of bytes) pairs; each may only raise its documented error."""
    from mr_tl.errors import FeatureError, RecordError
    from mr_tl.feature_set import read_lines
    from mr_tl.images import ImageRejected, preprocess
    from mr_tl.model.spec import ModelSpec
    from mr_tl.records import PackedImage, decode_arrays, parse_feature_line, unescape_field

    spec = ModelSpec(input_name="input", input_size=(32, 32), output_name="out", output_dim=1,
                     resize="center-crop", resize_shorter=40)

    def text(data):
        return data.decode("utf-8", "replace")

    def guard(fn, *errors):
        def run(data):
            try:
                fn(data)
            except errors:
                pass
        return run

    return [
        ("feature line", guard(lambda d: parse_feature_line(text(d)), RecordError)),
        ("feature line bytes", guard(lambda d: parse_feature_line(d), RecordError)),
        ("packed image", guard(lambda d: PackedImage.from_line(text(d)), RecordError)),
        ("arrays", guard(lambda d: decode_arrays(text(d)), RecordError)),
        ("escape", guard(lambda d: unescape_field(text(d)), RecordError)),
        ("feature set", guard(lambda d: read_lines(text(d).splitlines()), FeatureError)),
        ("image", guard(lambda d: preprocess(d, spec, max_pixels=4_000_000), ImageRejected)),
    ]


def run_atheris(argv):
    import atheris

    with atheris.instrument_imports():
        import mr_tl.feature_set  # noqa: F401
        import mr_tl.images  # noqa: F401
        import mr_tl.records  # noqa: F401
    cases = targets()

    def one_input(data):
        if not data:
            return
        name, fn = cases[data[0] % len(cases)]
        fn(data[1:])

    atheris.Setup([sys.argv[0]] + argv, one_input)
    atheris.Fuzz()


def run_hypothesis(examples):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    def checker(fn):
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.binary(max_size=4096))
        def check(data):
            fn(data)
        return check

    for name, fn in targets():
        checker(fn)()
        print("%-20s %d examples: no crash" % (name, examples), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--hypothesis":
        run_hypothesis(int(sys.argv[2]))
    else:
        run_atheris(sys.argv[1:])
