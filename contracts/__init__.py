"""Lua smart contracts for SmartShare: the sandboxed VM host and the system contracts.

Public API: ``contracts.vm`` (VM, CallContext, Result, ContractError), ``contracts.values``
(the canonical value encoding), ``contracts.vouchers`` (payment-channel vouchers),
``contracts.system`` (system contract sources), ``contracts.memstate`` (an in-memory state).
This package imports nothing of ``chain``: the chain hands the VM a state view per call.
Spec: docs/protocol.md §14.
"""
