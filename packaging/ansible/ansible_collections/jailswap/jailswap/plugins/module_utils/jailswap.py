# Copyright (c) jailswap contributors
# SPDX-License-Identifier: BSD-2-Clause

"""Runs the jailswap executable for the modules of this collection.

Every command runs with ``--json``, and only the fields that jailswap
documents as stable are read; its human output is never parsed.
"""

from __future__ import annotations

import json
import shlex

# The exit codes of jailswap (sysexits), as its manual documents them.
EXIT_CODES = {
    0: "success",
    1: "rolled back",
    2: "needs operator",
    64: "usage error",
    65: "invalid input or preflight refused; nothing was changed",
    66: "configuration file missing",
    70: "internal error",
    74: "journal error; nothing was changed",
    75: "busy: another jailswap runs, or a pending transaction must be recovered first",
    77: "permission denied",
    78: "configuration invalid; nothing was changed",
}


class Outcome:
    """One finished run of jailswap: its command, exit code, output and JSON."""

    def __init__(self, cmd, rc, stdout, stderr):
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.json = None
        if stdout and stdout.strip():
            try:
                self.json = json.loads(stdout)
            except ValueError:
                self.json = None

    def failure(self, what):
        """A message for a failed command: what it was, its exit code and
        what that code means, and jailswap's own message from stderr."""
        meaning = EXIT_CODES.get(self.rc, "unexpected exit code")
        message = "%s failed (exit %s: %s)" % (what, self.rc, meaning)
        detail = (self.stderr or "").strip()
        if detail:
            message += ": " + detail
        return message


class Jailswap:
    """The jailswap executable of the managed host."""

    def __init__(self, module, config=None):
        self.module = module
        self.config = config
        self.binary = module.get_bin_path("jailswap", required=True)

    def command(self, *arguments):
        cmd = [self.binary]
        if self.config:
            cmd.extend(["--config", self.config])
        cmd.append("--json")
        cmd.extend(arguments)
        return cmd

    def run(self, *arguments):
        cmd = self.command(*arguments)
        rc, stdout, stderr = self.module.run_command(cmd)
        return Outcome(cmd, rc, stdout, stderr)

    def suggest(self, *arguments):
        """The command line an operator would type, with this task's
        configuration file, for messages that say what to run next."""
        words = ["jailswap"]
        if self.config:
            words.extend(["-c", self.config])
        words.extend(arguments)
        return " ".join(shlex.quote(word) for word in words)

    def status(self):
        """``jailswap status --json`` as a dict. Fails the task when jailswap
        cannot say (missing or invalid configuration, damaged journal); the
        status it printed all the same, if any, is returned as ``jailswap``."""
        outcome = self.run("status")
        printed = outcome.json if isinstance(outcome.json, dict) else None
        if outcome.rc != 0:
            failure = dict(msg=outcome.failure("jailswap status"), rc=outcome.rc)
            if printed is not None:
                failure["jailswap"] = printed
            self.module.fail_json(**failure)
        if printed is None:
            self.module.fail_json(
                msg="jailswap status printed no JSON object: %r" % (outcome.stdout[:200],),
                rc=outcome.rc,
            )
        return printed
