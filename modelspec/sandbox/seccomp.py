"""A seccomp filter for the sandbox: `ptrace` fails with EPERM, everything else is allowed.

A stage that ptrace-attaches the sandbox's init stops it, and the build then waits forever
for a process that can never exit. bubblewrap installs the classic BPF program read from a
file descriptor (`--seccomp FD`); it is built here by hand, for the architectures we run on.
"""

from __future__ import annotations

import struct

# Offsets in struct seccomp_data, and the BPF opcodes used.
_NR, _ARCH = 0, 4
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
_ALLOW, _EPERM = 0x7FFF0000, 0x00050000 | 1
_X32_BIT = 0x40000000

# AUDIT_ARCH_* → the ptrace syscall numbers on that architecture.
PTRACE = {
    0xC000003E: (101, _X32_BIT | 521),  # x86_64, and its x32 ABI
    0x40000003: (26,),  # i386 (32-bit programs on x86_64)
    0xC00000B7: (117,),  # aarch64
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def deny_ptrace() -> bytes:
    """The filter program, as bytes for bwrap."""
    program: list[bytes] = [_insn(_LD_W_ABS, 0, 0, _ARCH)]
    for arch, numbers in PTRACE.items():
        # On this arch: load the syscall number, deny each ptrace number, else allow.
        body = [_insn(_LD_W_ABS, 0, 0, _NR)]
        for i, number in enumerate(numbers):
            remaining = len(numbers) - i - 1
            body.append(_insn(_JEQ_K, remaining + 1, 0, number))  # → deny (after the allow)
        body += [_insn(_RET_K, 0, 0, _ALLOW), _insn(_RET_K, 0, 0, _EPERM)]
        program.append(_insn(_JEQ_K, 0, len(body), arch))  # not this arch: skip its body
        program += body
    program.append(_insn(_RET_K, 0, 0, _ALLOW))
    return b"".join(program)
