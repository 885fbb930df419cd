"""The hyperparameters of a training run: one definition, with defaults, help and checks.

The train command's flags, the round job's options, the run's ``config.json``,
``--resume``'s comparison and the benchmarks all come from :data:`FIELDS`.
The defaults are the reference recipe (Deeplearning4j's
ParameterAveragingTrainingMaster on Caltech-256): seed 42, Nesterovs lr 0.01
momentum 0.8, batch 32 per worker, averaging every 5 minibatches.
"""

import argparse
import dataclasses
import math
from dataclasses import dataclass

from mr_tl.errors import UsageError
from mr_tl.normalization import KINDS as NORMALIZATIONS

OUTER_OPTIMIZERS = ("average", "block-momentum")


def parse_frequency(text):
    """``--averaging-frequency``: a number of minibatches, ``epoch`` (stored as 0) or ``Nepochs``
    (N passes over each worker's examples per round, stored as -N)."""
    if isinstance(text, int):   # already parsed (config.json of an older run may hold 0)
        return text
    text = str(text).strip().replace(" ", "")
    if text in ("epoch", "1epoch", "1epochs"):
        return 0
    if text.endswith(("epochs", "epoch")):
        number = text[:-6] if text.endswith("epochs") else text[:-5]
        if number.isdigit() and int(number) >= 1:
            return -int(number) if int(number) > 1 else 0
        raise argparse.ArgumentTypeError("expected e.g. 2epochs, found %r" % text)
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of minibatches, 'epoch' or e.g. '2epochs', found %r"
                                         % text) from None
    if value < 1:   # 0 is 'epoch' inside, never on a command line
        raise argparse.ArgumentTypeError("averaging frequency must be at least 1 (or 'epoch', or e.g. '2epochs')")
    return value


def format_frequency(value):
    """The text form of an averaging frequency (what config.json shows)."""
    return "epoch" if value == 0 else "%depochs" % -value if value < 0 else value


def flag(name):
    """``block_lr`` -> ``--block-lr``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Field:
    name: str
    type: object
    default: object
    help: str
    metavar: str = None
    choices: tuple = None

    @property
    def flag(self):
        return flag(self.name)


def _optional_float(text):
    return None if text in (None, "", "None") else float(text)


FIELDS = (
    Field("seed", int, 42, "seed of the initial weights, the worker of each example and the shuffles (default 42)"),
    Field("workers", int, 2, "workers, i.e. parallel SGD replicas (default 2)"),
    Field("averaging_frequency", parse_frequency, 5,
          "minibatches per worker between averagings (default 5, as the reference); 'epoch' = once per pass "
          "over each worker's examples; '2epochs', '4epochs' ... = after that many passes", metavar="K|epoch|Nepochs"),
    Field("batch_size", int, 32, "minibatch size per worker (default 32)"),
    Field("lr", float, 0.01, "learning rate (default 0.01)"),
    Field("momentum", float, 0.8, "Nesterov momentum (default 0.8)"),
    Field("l2", float, 0.0, "L2 regularization (default 0)"),
    Field("outer_optimizer", str, "average", "what the reducer does with the workers' mean (default average)",
          choices=OUTER_OPTIMIZERS),
    Field("block_momentum", _optional_float, None, "block momentum eta (default 1 - 1/workers)"),
    Field("block_lr", float, 1.0, "block learning rate zeta (default 1)"),
    Field("hidden", int, 0, "units of a hidden ReLU layer before the softmax (default 0: softmax only, as the "
          "reference recipe)"),
    Field("normalization", str, "none", "feature normalization fitted on the train split: none (the reference "
          "recipe), zscore, or sqrt-l2-zscore (signed square root, unit L2 rows, z-score) (default none)",
          choices=NORMALIZATIONS),
)

NAMES = tuple(f.name for f in FIELDS)


@dataclass(frozen=True)
class Hyperparameters:
    """What decides a run's result besides the data.  Checked on creation (:class:`UsageError`)."""

    seed: int = 42
    workers: int = 2
    averaging_frequency: int = 5   # minibatches per round; 0 = one pass over each worker's examples; -N = N passes
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.8
    l2: float = 0.0
    outer_optimizer: str = "average"
    block_momentum: float = None   # None: 1 - 1/workers with block momentum, 0 with plain averaging
    block_lr: float = 1.0
    hidden: int = 0
    normalization: str = "none"

    def __post_init__(self):
        problems = []
        if self.workers < 1:
            problems.append("--workers must be at least 1, found %d" % self.workers)
        if self.batch_size < 1:
            problems.append("--batch-size must be at least 1, found %d" % self.batch_size)
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append("--lr must be a positive number, found %r" % self.lr)
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            problems.append("--momentum must be in [0, 1), found %r" % self.momentum)
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            problems.append("--l2 must be >= 0, found %r" % self.l2)
        if self.outer_optimizer not in OUTER_OPTIMIZERS:
            problems.append("--outer-optimizer must be one of %s, found %r"
                            % (", ".join(OUTER_OPTIMIZERS), self.outer_optimizer))
        if self.block_momentum is None:
            eta = 1.0 - 1.0 / max(1, self.workers) if self.outer_optimizer == "block-momentum" else 0.0
            object.__setattr__(self, "block_momentum", eta)
        if not (math.isfinite(self.block_momentum) and 0 <= self.block_momentum < 1):
            problems.append("--block-momentum must be in [0, 1), found %r" % self.block_momentum)
        if not (math.isfinite(self.block_lr) and self.block_lr > 0):
            problems.append("--block-lr must be a positive number, found %r" % self.block_lr)
        if self.hidden < 0:
            problems.append("--hidden must be >= 0, found %d" % self.hidden)
        if self.normalization not in NORMALIZATIONS:
            problems.append("--normalization must be one of %s, found %r"
                            % (", ".join(NORMALIZATIONS), self.normalization))
        if problems:
            raise UsageError("; ".join(problems))

    # -- the command line ----------------------------------------------------------

    @staticmethod
    def add_arguments(add):
        """Declare every field as an option through ``add(flag, **kwargs)``: an argparse
        ``parser.add_argument`` or an MRJob's ``add_passthru_arg``."""
        for f in FIELDS:
            kwargs = {"type": f.type, "default": f.default, "help": f.help}
            if f.metavar:
                kwargs["metavar"] = f.metavar
            if f.choices:
                kwargs["choices"] = f.choices
            add(f.flag, **kwargs)

    @classmethod
    def from_options(cls, options):
        """From an argparse/mrjob options object with one attribute per field."""
        return cls(**{name: getattr(options, name) for name in NAMES})

    def to_args(self):
        """The options that give these values (for a job's command line)."""
        args = []
        for name in NAMES:
            value = getattr(self, name)
            if name == "averaging_frequency":
                value = format_frequency(value)
            args += [flag(name), repr(value) if isinstance(value, float) else str(value)]
        return args

    # -- config.json ---------------------------------------------------------------

    def to_dict(self):
        out = dataclasses.asdict(self)
        out["averaging_frequency"] = format_frequency(self.averaging_frequency)
        return out

    @classmethod
    def from_dict(cls, obj):
        obj = dict(obj)
        obj["averaging_frequency"] = parse_frequency(obj.get("averaging_frequency", 5))
        return cls(**{k: v for k, v in obj.items() if k in NAMES})

    def differences(self, other):
        """``{name: (mine, theirs)}`` of the fields that differ."""
        return {name: (getattr(self, name), getattr(other, name)) for name in NAMES
                if getattr(self, name) != getattr(other, name)}

    @property
    def passes_per_round(self):
        """Passes over each worker's examples per round (0: rounds of ``averaging_frequency`` minibatches)."""
        return 1 if self.averaging_frequency == 0 else -self.averaging_frequency if self.averaging_frequency < 0 else 0

    def describe_schedule(self):
        if self.passes_per_round:
            return "one pass" if self.passes_per_round == 1 else "%d passes" % self.passes_per_round
        return "%d minibatches of %d" % (self.averaging_frequency, self.batch_size)
