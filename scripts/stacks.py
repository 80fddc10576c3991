"""Drive a kthw stack from Python with the Pulumi Automation API, on the defaults of scripts/pulumi.

scripts/pulumi is the one place that knows how this project runs the CLI (the file backend, the passphrase,
PULUMI_HOME, the toolchain's bin dir on PATH, the workspace outside the checkout, no SSH agent). With
KTHW_PRINT_ENV=1 it prints that as JSON instead of running anything; `select(name)` opens the stack on it: a
`LocalWorkspace` on the project dir, the toolchain's CLI, those variables. Nothing here reads the CLI's human
output: outputs and config go through the Automation API, and what a preview would change comes from the
engine's own events (`PreviewEvents`).

    python scripts/stacks.py check-drift [STACK]     (scripts/check-drift)

check-drift previews the stack with a refresh (nothing is saved), which also asks every controller what it has
now (components/drift.py), and exits 0 when the engine proposes no change, 1 when it does (each changed resource
printed, and for a host's drift resource each drifted item), 2 when the check itself failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, TextIO

from pulumi import automation as auto

REPO = Path(__file__).resolve().parent.parent
# The operations the engine does not count as a change (engine.HasChanges, which --expect-no-changes uses).
NO_CHANGE = frozenset({"same", "read", "discard", "read-replacement"})
# A step the engine takes before the plan (a refresh's read of the resource): not a change of its own.
NOT_A_STEP = frozenset({"refresh"})
# What bash itself sets in every program's environment: not one of scripts/pulumi's defaults.
SHELL_BOOKKEEPING = frozenset({"_", "SHLVL", "PWD", "OLDPWD"})
# The SDK reports an event it cannot parse with warnings.warn, quoting the whole event (values included).
UNPARSED = ("Failed to parse engine event", "Error in event stream")


@dataclass(frozen=True)
class Defaults:
    """What scripts/pulumi runs the CLI with, against the environment it was asked from."""

    env: dict[str, str]  # every variable it sets or changes
    unset: tuple[str, ...]  # every variable it removes (SSH_AUTH_SOCK)
    work_dir: Path  # the project dir the CLI runs in (the workspace, or KTHW_PROJECT_DIR)
    bin: Path  # the toolchain's bin dir (the CLI, its plugins)


def defaults(environ: Optional[Mapping[str, str]] = None) -> Defaults:
    """Ask scripts/pulumi (KTHW_PRINT_ENV=1) for its defaults under `environ` (default: this process's)."""
    environ = dict(os.environ if environ is None else environ)
    result = subprocess.run([str(REPO / "scripts/pulumi")], env={**environ, "KTHW_PRINT_ENV": "1"}, text=True,
                            capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"KTHW_PRINT_ENV=1 scripts/pulumi failed ({result.returncode}): {result.stderr[-2000:]}")
    printed = json.loads(result.stdout)
    env = {k: v for k, v in printed["env"].items() if k not in SHELL_BOOKKEEPING}
    return Defaults(env={k: v for k, v in env.items() if environ.get(k) != v},
                    unset=tuple(sorted(set(environ) - set(env) - SHELL_BOOKKEEPING)),
                    work_dir=Path(printed["workDir"]), bin=Path(printed["bin"]))


def select(stack_name: str) -> auto.Stack:
    """The existing stack `stack_name` on scripts/pulumi's defaults (auto.StackNotFoundError if there is none).

    The Automation API runs the CLI with this process's environment plus the workspace's `env_vars`, so the
    variables scripts/pulumi removes are removed from this process's environment too."""
    found = defaults()
    for name in found.unset:
        os.environ.pop(name, None)
    if found.bin.name != "bin":
        raise SystemExit(f"the toolchain's bin dir {found.bin} is not named bin (PulumiCommand runs <root>/bin/pulumi)")
    command = auto.PulumiCommand(root=str(found.bin.parent), skip_version_check=True)
    workspace = auto.LocalWorkspace(work_dir=str(found.work_dir), env_vars=found.env, pulumi_command=command)
    return auto.Stack.select(stack_name, workspace)


def set_secret_config(stack: auto.Stack, key: str, value: str) -> None:
    """`stack.set_config(key, ConfigValue(value, secret=True))`, but with the value on the CLI's stdin: the
    Automation API passes a config value as an argument, which every local user can read in /proc/<pid>/cmdline
    while the CLI runs. The same CLI, project dir and variables as the stack's workspace."""
    workspace = stack.workspace
    result = subprocess.run([workspace.pulumi_command.command, "config", "set", "--secret", key, "--stack", stack.name,
                             "--non-interactive"], input=value, text=True, capture_output=True, timeout=300,
                            cwd=workspace.work_dir, env={**os.environ, **workspace.env_vars})
    if result.returncode != 0:
        raise auto.errors.create_command_error(auto.CommandResult(result.stdout, result.stderr, result.returncode))


# -- what a preview proposes, from the engine's events --------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One step the engine proposes. Names only: `diffs` are property names, `drift` a host's drift items (a
    HostState's `drift` output: file paths and unit states, never values)."""

    op: str
    urn: str
    type: str
    diffs: tuple[str, ...] = ()
    drift: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    def lines(self) -> list[str]:
        why = f" ({', '.join(self.diffs)})" if self.diffs and not self.drift else ""
        return [f"{self.op} {self.name} [{self.type}]{why}", *(f"  {item}" for item in self.drift)]


def _drift_items(step: Any) -> tuple[str, ...]:
    """A drift resource's items: its refreshed state's `drift` output (a list of strings), if it has one."""
    for state in (step.old, step.new):
        items = (state.outputs or {}).get("drift") if state is not None else None
        if isinstance(items, list) and items and all(isinstance(i, str) for i in items):
            return tuple(items)
    return ()


@dataclass
class PreviewEvents:
    """Collects a preview's engine events (`add` is the `on_event` callback) into what the engine proposes."""

    changes: list[Change] = field(default_factory=list)
    summary: Optional[dict[str, int]] = None  # the summary event's count per operation
    errors: list[str] = field(default_factory=list)  # error diagnostics, failed operations, unreadable events

    def add(self, event: auto.EngineEvent) -> None:
        if event.resource_pre_event is not None:
            step = event.resource_pre_event.metadata
            op = getattr(step.op, "value", step.op)
            if op not in NO_CHANGE and op not in NOT_A_STEP:
                self.changes.append(Change(op, step.urn, step.type, tuple(sorted(step.diffs or ())),
                                           _drift_items(step)))
        elif event.summary_event is not None:
            self.summary = {getattr(k, "value", k): int(v) for k, v in event.summary_event.resource_changes.items()}
        elif event.diagnostic_event is not None and event.diagnostic_event.severity == "error":
            diag = event.diagnostic_event
            where = f"{diag.urn.rsplit('::', 1)[-1]}: " if diag.urn else ""
            self.errors.append(where + diag.message.strip())
        elif event.res_op_failed_event is not None:
            self.errors.append(f"{event.res_op_failed_event.metadata.urn.rsplit('::', 1)[-1]}: operation failed")

    @property
    def proposes_changes(self) -> bool:
        """The engine's own verdict (its summary's counts), as --expect-no-changes judges it."""
        return any(count for op, count in (self.summary or {}).items() if op not in NO_CHANGE)

    def report(self) -> list[str]:
        lines = [line for change in self.changes for line in change.lines()]
        if self.proposes_changes and not self.changes:
            counts = ", ".join(f"{op} {n}" for op, n in sorted(self.summary.items()) if op not in NO_CHANGE and n)
            lines.append(f"the engine counts changes the events did not name: {counts}")
        return lines


@contextmanager
def _unparsed_events_are_errors(seen: PreviewEvents) -> Iterator[None]:
    """An event the SDK cannot parse is an error of the check, reported without its text (it may hold values)."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' signature
        if str(message).startswith(UNPARSED):
            seen.errors.append(f"an engine event could not be read ({str(message).splitlines()[0]})")
        else:
            original(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


def check_drift(stack_name: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """0 no drift, 1 drift (printed to `out`), 2 the check failed (why, to `err`)."""
    try:
        stack = select(stack_name)
    except auto.CommandError as error:
        print(f"check-drift: cannot select stack {stack_name}:\n{str(error)[-3000:]}", file=err)
        return 2
    seen = PreviewEvents()
    failure: Optional[Exception] = None
    with _unparsed_events_are_errors(seen):
        try:
            stack.preview(refresh=True, expect_no_changes=True, on_event=seen.add, color="never",
                          suppress_progress=True)
        except (auto.CommandError, RuntimeError) as error:
            failure = error
    if seen.errors or (failure is not None and not seen.proposes_changes):
        # The preview did not run to its verdict, or it did and also failed: drift cannot be told.
        print(f"check-drift: the check of stack {stack_name} failed:", file=err)
        for error in seen.errors:
            print(textwrap.indent(error, "  "), file=err)
        if failure is not None and not seen.errors:
            print(str(failure)[-3000:], file=err)
        return 2
    if seen.proposes_changes or seen.changes:
        print(f"check-drift: stack {stack_name} drifted:", file=out)
        for line in seen.report():
            print(f"  {line}", file=out)
        return 1
    print(f"check-drift: stack {stack_name} has no drift", file=out)
    return 0


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    drift = commands.add_parser("check-drift", help="exit 0 no drift, 1 drift (printed), 2 the check failed")
    drift.add_argument("stack", nargs="?", default="local")
    args = parser.parse_args(argv)
    sys.exit(check_drift(args.stack))


if __name__ == "__main__":
    main()
