"""How `offboard lab up` treats a lab container that already exists (no docker needed: the docker CLI
calls are recorded, not run)."""

from __future__ import annotations

import pytest
from offboard import lab


def _state(image: str, running: bool, labelled: bool = True, plant: str = "p1") -> dict:
    labels = {lab.LABEL: "1", f"{lab.LABEL}.plant": plant} if labelled else {}
    return {"Config": {"Labels": labels, "Image": image}, "State": {"Running": running}}


@pytest.fixture
def docker_calls(monkeypatch):
    calls: list[list[str]] = []

    def fake_run(cmd, **_kwargs):
        calls.append(cmd)
        return None

    monkeypatch.setattr(lab, "_run", fake_run)
    monkeypatch.setattr(lab, "_restrict_sshd", lambda host: calls.append(["restrict-sshd", host.name]))
    return calls


HOST = lab.LabHost(name="lab-srv01", container="offboard-lab-srv01", offline=False)


def _verbs(calls: list[list[str]]) -> list[str]:
    return [c[1] if c[0] == "docker" else c[0] for c in calls]


def test_a_running_container_of_the_current_image_is_kept(monkeypatch, docker_calls):
    monkeypatch.setattr(lab, "container_state", lambda name: _state("img:1", running=True))
    lab.ensure_container(HOST, "img:1", "p1")
    assert docker_calls == []


def test_a_stopped_container_is_recreated_not_restarted(monkeypatch, docker_calls):
    # A container whose daemon was killed under it came back half-booted (a planted boot script that
    # never returned kept systemd "starting" for an hour and hung CI): it is replaced, never restarted.
    monkeypatch.setattr(lab, "container_state", lambda name: _state("img:1", running=False))
    lab.ensure_container(HOST, "img:1", "p1")
    assert _verbs(docker_calls) == ["rm", "create", "start"]


def test_a_container_of_another_image_is_recreated(monkeypatch, docker_calls):
    monkeypatch.setattr(lab, "container_state", lambda name: _state("img:0", running=True))
    lab.ensure_container(HOST, "img:1", "p1")
    assert _verbs(docker_calls) == ["rm", "create", "start"]


def test_a_container_that_is_not_the_labs_is_never_touched(monkeypatch, docker_calls):
    monkeypatch.setattr(lab, "container_state", lambda name: _state("img:1", running=False, labelled=False))
    with pytest.raises(lab.LabError, match="not a lab container"):
        lab.ensure_container(HOST, "img:1", "p1")
    assert docker_calls == []


def test_a_container_planted_from_other_lab_definitions_is_recreated(monkeypatch, docker_calls):
    monkeypatch.setattr(lab, "container_state", lambda name: _state("img:1", running=True, plant="p0"))
    lab.ensure_container(HOST, "img:1", "p1")
    assert _verbs(docker_calls) == ["rm", "create", "start"]
    assert f"{lab.LABEL}.plant=p1" in docker_calls[1]


def test_the_plant_digest_follows_the_lab_definitions(tmp_path):
    (tmp_path / "playbooks" / "lab").mkdir(parents=True)
    (tmp_path / "inventories" / "lab").mkdir(parents=True)
    footprints = tmp_path / "playbooks" / "lab" / "footprints.yml"
    footprints.write_text("a: 1\n")
    first = lab.plant_digest(tmp_path)
    assert lab.plant_digest(tmp_path) == first
    footprints.write_text("a: 2\n")
    assert lab.plant_digest(tmp_path) != first
