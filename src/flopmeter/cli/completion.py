"""Shell completion through argcomplete (the ``completion`` extra)::

    pip install 'flopmeter[completion]'
    eval "$(register-python-argcomplete flopmeter)"      # bash/zsh; once per shell, or in ~/.bashrc

The first word completes to a subcommand, a SPEC prefix (``torchvision:``, ``timm:``, ``hf:``),
a built-in ``hf:`` config, zoo names after their prefix, or a file; options complete by name,
with their choices.
"""

from __future__ import annotations

import os
import shlex
import sys


def spec_completer(prefix: str, **_) -> list[str]:
    """Candidates for a SPEC (or, as the first word, a subcommand)."""
    from ..frontends.hf import builtin_names
    from . import COMMANDS
    if prefix.startswith("hf:"):
        return [f"hf:{n}" for n in builtin_names()]
    if prefix.startswith("torchvision:"):
        import torchvision
        return [f"torchvision:{n}" for n in torchvision.models.list_models()]
    if prefix.startswith("timm:"):
        import timm
        return [f"timm:{n}" for n in timm.list_models(prefix[5:] + "*")]
    from argcomplete.completers import FilesCompleter
    files = [f for f in FilesCompleter()(prefix) if f.endswith(("/", ".py", ".pt2", ".pt", ".pth", ".ts", ".jit"))]
    return [*COMMANDS, "torchvision:", "timm:", "hf:", *files]


def parser_for(words: list[str]):
    """The parser that will read this command line: a subcommand's, or the count command's."""
    from . import COMMANDS, command
    return command(words[1] if len(words) > 1 and words[1] in COMMANDS else "count")[0]()


def complete(output_stream=None, exit_method=os._exit) -> None:
    """Answer argcomplete's request (it exits the process); a no-op without argcomplete."""
    try:
        import argcomplete
    except ImportError:
        return
    words = shlex.split(os.environ.get("COMP_LINE", "")[: int(os.environ.get("COMP_POINT", 0) or 0)])
    parser = parser_for(words)
    for action in parser._actions:          # argparse has no public way to reach the positionals
        if action.dest in ("spec", "specs"):
            action.completer = spec_completer
    argcomplete.autocomplete(parser, output_stream=output_stream, exit_method=exit_method)
    sys.stdout.flush()
