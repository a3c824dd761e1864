"""A small diamond pipeline used by the build-engine tests.

raw ──▶ a ──▶ b ──▶ d
 └────▶ c ────────▲
"""

from __future__ import annotations

from conftest import Repo

SPEC = """\
modelspec: 1
name: pipe
version: "1.0"
code: {{repo: ..}}
data:
  raw: {{path: data/raw.txt}}
config: {{dir: conf}}
hermetic: {hermetic}
stages:
  a:
    cmd: sh -c 'head -n 1 ${{inputs.raw}} > ${{outputs.out}}; echo a=${{config.a.v}} >> ${{outputs.out}}; {a_extra}'
    code: [src/a.sh]
    inputs: [raw]
    params: [a]
    outputs: {{out: a.txt}}
  b:
    cmd: sh -c 'cat ${{inputs.a.out}} > ${{outputs.out}}; echo b >> ${{outputs.out}}; {b_extra}'
    inputs: [a.out]
    outputs: {{out: b.txt}}
  c:
    cmd: sh -c 'tail -n 1 ${{inputs.raw}} > ${{outputs.out}}; echo c=${{config.c.v}} >> ${{outputs.out}}; {c_extra}'
    inputs: [raw]
    params: [c]
    outputs: {{out: c.txt}}
  d:
    cmd: sh -c 'cat ${{inputs.b.out}} ${{inputs.c.out}} > ${{outputs.out}}'
    inputs: [b.out, c.out]
    outputs: {{out: d.txt}}
artifacts: [d.out]
"""


def make_pipeline(
    repo: Repo, *, hermetic: str = "auto", a_extra: str = "true", b_extra: str = "true", c_extra: str = "true"
) -> str:
    repo.write(
        "specs/pipe.yaml",
        SPEC.format(hermetic=hermetic, a_extra=a_extra, b_extra=b_extra, c_extra=c_extra),
        dedent=False,
    )
    repo.write("data/raw.txt", "first\nmiddle\nlast\n")
    repo.write("conf/config.yaml", "a: {v: 1}\nc: {v: 1}\nunused: {v: 1}\n")
    repo.write("src/a.sh", "# code of stage a\n")
    repo.write("README.txt", "not code of any stage\n")
    repo.commit("pipeline")
    return "specs/pipe.yaml"


def expected_d(raw: str, a: object = 1, c: object = 1) -> str:
    """What stage d must contain, computed independently of modelspec."""
    lines = raw.splitlines()
    return f"{lines[0]}\na={a}\nb\n{lines[-1]}\nc={c}\n"
