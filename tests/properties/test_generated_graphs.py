"""Build-system properties on randomly generated DAGs (seeded), through the library API with
real git, real processes and a real store: correct, minimal, and a change reruns exactly
its downstream cone."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import Repo

from modelspec.api import BuildOptions, build
from modelspec.build.rebuilder import NodeState
from modelspec.store.objects import LocalStore


def generate(repo: Repo, seed: int, size: int = 8) -> tuple[str, dict[int, list[int]]]:
    """A spec of `size` stages; stage i reads the raw data and a random subset of earlier stages."""
    rng = random.Random(seed)
    parents = {i: sorted(rng.sample(range(i), k=rng.randint(0, min(i, 2)))) for i in range(size)}
    stages = []
    for i in range(size):
        inputs = ["raw", *(f"s{p}.out" for p in parents[i])]
        reads = " ".join(f"${{inputs.{name}}}" for name in inputs)
        stages.append(
            f"  s{i}:\n"
            f"    cmd: sh -c 'cat {reads} > ${{outputs.out}}; echo s{i}=${{config.p.s{i}}} >> ${{outputs.out}}'\n"
            f"    inputs: [{', '.join(inputs)}]\n"
            f"    params: [p.s{i}]\n"
            f"    outputs: {{out: out.txt}}\n"
        )
    spec = (
        'modelspec: 1\nname: gen\nversion: "1.0"\ncode: {repo: ..}\n'
        "data: {raw: {path: raw.txt}}\nconfig: {dir: conf}\nhermetic: off\n"
        "stages:\n" + "".join(stages) + f"artifacts: [s{size - 1}.out]\n"
    )
    repo.write("specs/gen.yaml", spec, dedent=False)
    repo.write("raw.txt", "raw\n")
    repo.write("conf/config.yaml", "p:\n" + "".join(f"  s{i}: 0\n" for i in range(size)))
    repo.commit("generated")
    return "specs/gen.yaml", parents


def expected_output(i: int, parents: dict[int, list[int]], values: dict[int, int]) -> str:
    """What stage i must hold, computed without modelspec."""
    return "raw\n" + "".join(expected_output(p, parents, values) for p in parents[i]) + f"s{i}={values[i]}\n"


def cone(i: int, parents: dict[int, list[int]]) -> set[int]:
    children = {c for c, ps in parents.items() if i in ps}
    return {i}.union(*(cone(c, parents) for c in children))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_graph_is_correct_minimal_and_reruns_exactly_the_cone(repo: Repo, seed: int) -> None:
    spec, parents = generate(repo, seed)
    path = [repo.path / spec]
    values = dict.fromkeys(parents, 0)

    first = build(path, BuildOptions(jobs=2))
    store = LocalStore(repo.path / ".modelspec")
    assert first.ok and first.count(NodeState.RAN) == len(parents)
    for outcome in first.outcomes:
        i = int(outcome.node.removeprefix("gen:s"))
        assert outcome.result is not None
        stored = store.read_bytes(outcome.result.outputs["out"].digest).decode()
        assert stored == expected_output(i, parents, values)

    second = build(path, BuildOptions(jobs=2))
    assert second.count(NodeState.RAN) == 0  # minimal

    changed = random.Random(seed).randrange(len(parents))
    values[changed] = 1
    third = build(path, BuildOptions(jobs=2, overrides=(f"p.s{changed}=1",)))
    ran = {int(o.node.removeprefix("gen:s")) for o in third.outcomes if o.state is NodeState.RAN}
    assert ran == cone(changed, parents)


def test_generated_graph_outputs_do_not_depend_on_parallelism(tmp_path: Path) -> None:
    digests = []
    for jobs in (1, 4):
        repo = Repo(tmp_path / f"j{jobs}")
        spec, _parents = generate(repo, seed=7, size=10)
        report = build([repo.path / spec], BuildOptions(jobs=jobs))
        digests.append({o.node: o.result.outputs["out"].digest for o in report.outcomes if o.result})
    assert digests[0] == digests[1]
