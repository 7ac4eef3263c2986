"""`offboard completion bash|zsh`: a shell completion script generated from the parser (shtab), so it
always knows every subcommand and option of this version.

    eval "$(offboard completion bash)"                          # this shell
    offboard completion zsh > "${fpath[1]}/_offboard"           # zsh, for good
"""

from __future__ import annotations

import argparse

from offboard import jsonout
from offboard.errors import EXIT_OK
from offboard.helptext import add_command

SHELLS = ("bash", "zsh")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "completion")
    p.add_argument("shell", metavar="SHELL", choices=SHELLS, help="bash or zsh")
    jsonout.add_flag(p)
    p.set_defaults(func=cmd_completion)


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    import shtab

    return shtab.complete(parser, shell=shell)


def cmd_completion(args: argparse.Namespace) -> int:
    text = script(args.parser, args.shell)  # the whole `offboard` parser (cli.build_parser sets it)
    if args.json:
        return jsonout.emit("completion", EXIT_OK, {"shell": args.shell, "script": text})
    print(text)
    return EXIT_OK
