#!/usr/bin/python

# Copyright (c) jailswap contributors
# SPDX-License-Identifier: BSD-2-Clause

from __future__ import annotations

DOCUMENTATION = r"""
module: info
short_description: Report the live jail template, the jails and any pending transaction of jailswap
version_added: 0.1.0
description:
  - Runs C(jailswap status --json) on the managed host and returns what it reports as RV(jailswap),
    that is the label of the live template, the previous one, every template in the store with its role, each
    jail with the template it runs on, and the pending transaction if any.
  - Changes nothing on the host.
requirements:
  - C(jailswap) on the managed host, in E(PATH) or in C(/sbin), C(/usr/sbin) or C(/usr/local/sbin).
  - Root on the managed host (C(become)) where the configuration or the journal of jailswap is readable by root only.
author:
  - jailswap maintainers (@jailswap)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  platform:
    support: full
    platforms: [freebsd, linux]
options:
  config:
    description:
      - The configuration file of jailswap on the managed host.
      - When not set, jailswap reads E(JAILSWAP_CONFIG), else its system path
        (C(/usr/local/etc/jailswap.toml) on FreeBSD, C(/etc/jailswap.toml) elsewhere).
    type: path
seealso:
  - module: jailswap.jailswap.upgrade
"""

EXAMPLES = r"""
- name: Read the state of jailswap
  jailswap.jailswap.info:
  become: true
  register: jailswap_state

- name: Stop when a transaction waits for recovery
  ansible.builtin.assert:
    that: jailswap_state.jailswap.pending is none
    fail_msg: "transaction {{ jailswap_state.jailswap.pending }} is pending: run jailswap status, then jailswap recover"

- name: List the jails that do not run
  ansible.builtin.debug:
    msg: "{{ jailswap_state.jailswap.jails | rejectattr('running') | map(attribute='name') }}"
"""

RETURN = r"""
jailswap:
  description:
    - The output of C(jailswap status --json). Its documented fields are listed here; jailswap may add others.
    - When jailswap fails (for example exit 74, a damaged journal) but still printed its view of the host,
      that view is returned with the failure.
  returned: success
  type: dict
  contains:
    live:
      description: The label of the live template (the name it had in the store before it went live).
      type: str
      sample: mroot.20240601
    previous:
      description: The template the last committed transaction archived, which C(jailswap rollback) makes live again.
      type: str
      sample: mroot.20240301
    pending:
      description: The number of the transaction that must be recovered first, or V(null).
      type: int
      sample: null
    store_kind:
      description: What a template is in the store, V(directory), V(btrfs) or V(zfs).
      type: str
      returned: when jailswap reports it
      sample: directory
    templates:
      description: Every template in the store.
      type: list
      elements: dict
      contains:
        name:
          description: Its name in the store.
          type: str
          sample: mroot.20240301
        role:
          description: V(live), V(previous), V(archived) or V(staged).
          type: str
          sample: previous
    jails:
      description: Each jail of the configuration.
      type: list
      elements: dict
      contains:
        name:
          description: The name of the jail.
          type: str
          sample: www
        running:
          description: Whether the jail runs.
          type: bool
          sample: true
        mounted:
          description: Whether every mount of its fstab is mounted.
          type: bool
          sample: true
        template:
          description: The label of the template the jail runs on.
          type: str
          sample: mroot
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.jailswap.jailswap.plugins.module_utils.jailswap import Jailswap


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    jailswap = Jailswap(module, module.params["config"])
    module.exit_json(changed=False, jailswap=jailswap.status())


if __name__ == "__main__":
    main()
