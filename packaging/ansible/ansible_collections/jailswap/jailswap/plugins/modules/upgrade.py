#!/usr/bin/python

# Copyright (c) jailswap contributors
# SPDX-License-Identifier: BSD-2-Clause

from __future__ import annotations

DOCUMENTATION = r"""
module: upgrade
short_description: Make a staged jail template live with jailswap
version_added: 0.1.0
description:
  - Makes the staged template O(to) the live template under the host's jails, as one journaled
    C(jailswap upgrade) transaction. The jails stop, their template is swapped, they start again,
    and their health checks decide between commit and an automatic rollback.
  - Does nothing when O(to) is live already and no transaction is pending, so the task can run again.
  - In check mode runs C(jailswap upgrade --dry-run), which plans every step and changes nothing.
  - A rolled back upgrade, and one that needs an operator, fail the task with the cause and what to
    run next in RV(msg); so does every other error jailswap reports, with its own message.
  - Reads only the documented fields of the C(--json) output of C(jailswap).
requirements:
  - C(jailswap) on the managed host, in E(PATH) or in C(/sbin), C(/usr/sbin) or C(/usr/local/sbin).
  - Root on the managed host (C(become)), as C(jailswap upgrade) mounts and starts jails.
author:
  - jailswap maintainers (@jailswap)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs C(jailswap upgrade --dry-run), which takes no lock and records nothing.
  diff_mode:
    support: full
    details:
      - The label of the live template before and after, and the steps of the transaction.
  platform:
    support: full
    platforms: [freebsd, linux]
options:
  to:
    description:
      - The template to make live, by its name in the store, such as V(mroot.20240601).
      - Once live, a template is reported by this name (its label), so the task is idempotent.
    type: str
    required: true
  config:
    description:
      - The configuration file of jailswap on the managed host.
      - When not set, jailswap reads E(JAILSWAP_CONFIG), else its system path
        (C(/usr/local/etc/jailswap.toml) on FreeBSD, C(/etc/jailswap.toml) elsewhere).
    type: path
  archive_as:
    description:
      - The name the outgoing template gets in the store.
      - When not set, jailswap uses the label the outgoing template went live under.
    type: str
  reason:
    description:
      - Why the upgrade is made; recorded in the journal and shown by C(jailswap history).
    type: str
  rolling:
    description:
      - Restart the jails a batch at a time instead of all at once (C(jailswap upgrade --rolling)), so that
        the jails outside the current batch keep serving.
      - Refused by jailswap on a ZFS store.
    type: bool
    default: false
  batch:
    description:
      - The batch sizes of a rolling upgrade (C(--batch)), written as the C(serial) keyword of a play takes
        them, for example V(1,25%); the last size repeats until every jail is done.
      - When not set, jailswap uses C(batch) under C([rolling]) in its configuration.
      - Only with O(rolling=true).
    type: str
  force:
    description:
      - Skip the check that the target has every top-level symbolic link of the live template
        (such as C(etc -> s/etc)).
    type: bool
    default: false
notes:
  - An upgrade that rolled back leaves the host healthy on the template it had before; the task fails with
    C(changed=false) so that O(to) is tried again on the next run.
  - An upgrade that needs an operator stays pending; later upgrades refuse (exit 75) until
    C(jailswap recover) has finished it.
  - To upgrade a fleet a few hosts at a time, see the playbook C(jailswap.jailswap.rolling_upgrade) of this
    collection.
seealso:
  - module: jailswap.jailswap.info
"""

EXAMPLES = r"""
- name: Make the template staged as mroot.20240601 live
  jailswap.jailswap.upgrade:
    to: mroot.20240601
    reason: 14.1-RELEASE-p3 security update
  become: true

- name: Upgrade with the jails restarting one, then a quarter, at a time
  jailswap.jailswap.upgrade:
    to: mroot.20240601
    rolling: true
    batch: "1,25%"
  become: true

- name: Upgrade the jails of a second configuration and keep the outgoing template under a chosen name
  jailswap.jailswap.upgrade:
    to: mroot.20240601
    config: /usr/local/etc/jailswap-web.toml
    archive_as: mroot.20240301
  become: true
  register: upgrade

- name: Say how long the jails were down
  ansible.builtin.debug:
    msg: "{{ upgrade.from }} -> {{ upgrade.to }}: {{ upgrade.downtime_ms }} ms"
  when: upgrade is changed
"""

RETURN = r"""
outcome:
  description:
    - V(committed) when the upgrade went through, V(planned) in check mode, V(already_live) when O(to)
      was live already and nothing was done.
    - V(rolled_back) or V(needs_operator) when the task failed in the transaction.
    - V(null) when jailswap refused before starting a transaction.
  type: str
  returned: always
  sample: committed
id:
  description: The number of the transaction in the journal of jailswap, as C(jailswap history) lists it.
  type: int
  returned: when a transaction ran
  sample: 7
from:
  description: The label of the template that was live before.
  type: str
  returned: when jailswap got as far as planning
  sample: mroot.20240301
to:
  description: The label of the template that was to go live.
  type: str
  returned: always
  sample: mroot.20240601
downtime_ms:
  description:
    - The longest time any jail was down, in milliseconds.
    - V(null) in check mode and when nothing was done.
  type: int
  returned: always
  sample: 840
rc:
  description:
    - The exit code of C(jailswap). V(0) committed or nothing to do, V(1) rolled back, V(2) needs operator,
      V(64) usage error, V(65) invalid input or preflight refused, V(66) configuration missing,
      V(74) journal error, V(75) busy or a pending transaction, V(77) permission denied,
      V(78) configuration invalid.
  type: int
  returned: always
  sample: 0
msg:
  description:
    - What happened, in one sentence.
    - For a rollback or a transaction that needs an operator, the cause and the commands to run
      (C(jailswap status), C(jailswap recover)); for any other error, the message of jailswap.
  type: str
  returned: always
  sample: "committed: transaction 7, upgrade mroot.20240301 -> mroot.20240601, jails down at most 840 ms"
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jailswap.jailswap.plugins.module_utils.jailswap import Jailswap


def steps_text(result):
    """The steps of a plan or a transaction, one line each, from the
    documented fields of a step."""
    lines = []
    for step in result.get("steps") or []:
        line = "%4s  %s" % (step.get("seq"), step.get("action"))
        if step.get("jail"):
            line += " " + step["jail"]
        if step.get("state"):
            line += "  (%s)" % step["state"]
        lines.append(line)
    header = "%s %s -> %s\n" % (result.get("kind") or "upgrade", result.get("from"), result.get("to"))
    return header + "".join(line + "\n" for line in lines)


def cause(jailswap, result):
    """Why a transaction did not commit: its ``error`` and ``attention``,
    read from ``jailswap show`` when the upgrade's own output lacks them,
    else the first step that recorded an error."""
    error = result.get("error")
    attention = result.get("attention")
    steps = result.get("steps") or []
    if ("error" not in result or "attention" not in result) and result.get("id") is not None:
        shown = jailswap.run("show", str(result["id"]))
        if shown.rc == 0 and isinstance(shown.json, dict):
            error = error or shown.json.get("error")
            attention = attention or shown.json.get("attention")
            steps = shown.json.get("steps") or steps
    if not error:
        for step in steps:
            if step.get("error"):
                error = "step %s (%s%s): %s" % (
                    step.get("seq"),
                    step.get("action"),
                    " " + step["jail"] if step.get("jail") else "",
                    step["error"],
                )
                break
    return error or "jailswap recorded no cause", attention


def main():
    module = AnsibleModule(
        argument_spec=dict(
            to=dict(type="str", required=True),
            config=dict(type="path"),
            archive_as=dict(type="str"),
            reason=dict(type="str"),
            rolling=dict(type="bool", default=False),
            batch=dict(type="str"),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    to = module.params["to"]
    if module.params["batch"] is not None and not module.params["rolling"]:
        module.fail_json(msg="batch sets the batch sizes of a rolling upgrade: set rolling=true as well", to=to)

    jailswap = Jailswap(module, module.params["config"])
    status = jailswap.status()
    live = status.get("live")
    if live == to and status.get("pending") is None:
        nothing = dict(changed=False, outcome="already_live", id=None, to=to, downtime_ms=None, rc=0)
        nothing["from"] = live
        module.exit_json(msg="%s is live already and no transaction is pending: nothing to do" % to, **nothing)

    arguments = ["upgrade", "--to", to]
    if module.params["archive_as"] is not None:
        arguments += ["--archive-as", module.params["archive_as"]]
    if module.params["reason"] is not None:
        arguments += ["--reason", module.params["reason"]]
    if module.params["rolling"]:
        arguments.append("--rolling")
    if module.params["batch"] is not None:
        arguments += ["--batch", module.params["batch"]]
    if module.params["force"]:
        arguments.append("--force")
    if module.check_mode:
        arguments.append("--dry-run")

    run = jailswap.run(*arguments)
    result = run.json if isinstance(run.json, dict) else {}
    outcome = result.get("outcome")
    answer = dict(
        outcome=outcome,
        id=result.get("id"),
        to=result.get("to") or to,
        downtime_ms=result.get("downtime_ms"),
        rc=run.rc,
    )
    answer["from"] = result.get("from") or live

    if run.rc == 0 and outcome is not None:
        if module._diff:
            answer["diff"] = dict(
                before="live: %s\n" % answer["from"],
                after="live: %s\n" % answer["to"],
                before_header="jailswap live template",
                after_header="jailswap live template",
                prepared=steps_text(result),
            )
        if module.check_mode:
            msg = "check mode: would upgrade %s -> %s in %d steps; nothing was changed" % (
                answer["from"],
                answer["to"],
                len(result.get("steps") or []),
            )
        else:
            msg = "%s: transaction %s, upgrade %s -> %s" % (outcome, answer["id"], answer["from"], answer["to"])
            if answer["downtime_ms"] is not None:
                msg += ", jails down at most %s ms" % answer["downtime_ms"]
        module.exit_json(changed=True, msg=msg, **answer)

    if run.rc == 1 and outcome == "rolled_back":
        error, _attention = cause(jailswap, result)
        msg = (
            "rolled back: transaction %s, upgrade %s -> %s failed and the jails run on %s again. Cause: %s. "
            "See `%s` for the host and `%s` for the steps."
            % (
                answer["id"],
                answer["from"],
                answer["to"],
                answer["from"],
                error.rstrip("."),
                jailswap.suggest("status"),
                jailswap.suggest("show", str(answer["id"])),
            )
        )
        module.fail_json(changed=False, msg=msg, **answer)

    if run.rc == 2 and outcome == "needs_operator":
        error, attention = cause(jailswap, result)
        msg = "needs operator: transaction %s, upgrade %s -> %s is pending: " % (answer["id"], answer["from"], answer["to"])
        if attention:
            msg += attention.rstrip(".") + ". "
        else:
            msg += "neither direction could be completed. "
        # The attention text usually quotes the error already.
        if not attention or error not in attention:
            msg += "Cause: %s. " % error.rstrip(".")
        msg += "Run `%s` to see what is wrong, fix it, then run `%s` to finish the transaction." % (
            jailswap.suggest("status"),
            jailswap.suggest("recover"),
        )
        module.fail_json(changed=True, msg=msg, **answer)

    what = "jailswap upgrade --dry-run" if module.check_mode else "jailswap upgrade"
    if run.rc == 0:
        module.fail_json(changed=False, msg="%s exited 0 but printed no result: %r" % (what, run.stdout[:200]), **answer)
    module.fail_json(changed=False, msg=run.failure(what), **answer)


if __name__ == "__main__":
    main()
