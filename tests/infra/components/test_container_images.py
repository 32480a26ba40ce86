"""The trainer and serving images under Pulumi mocks: staged contexts, builds, digest refs."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pulumi
import pytest

from app.core.config import IMAGE_DIGEST_REF
from components.container_images import ContainerImages, ContainerImagesArgs
from images import SERVING, TRAINER
from stacks.mocks import FakeGcp, MockRun, run_with_mocks
from tests.infra.conftest import ROOT, assert_component_shape

IMAGE = "docker-build:index:Image"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
CLIENT_CONFIG = "gcp:organizations/getClientConfig:getClientConfig"
TOKEN = "ya29.mock-access-token"
PATH = "us-central1-docker.pkg.dev/fraud-mlops-test/fraud-mlops-images"
TRAINER_REF = f"{PATH}/trainer@sha256:{'a' * 64}"
SERVING_REF = f"{PATH}/serving@sha256:{'b' * 64}"


class ImageMocks(FakeGcp):
    """FakeGcp plus what this component reads: a pushed image's digest and the
    deployer's access token. (stacks/mocks.py has neither yet.)"""

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        if args.typ == IMAGE:
            tag = args.inputs["tags"][0]
            digest = f"sha256:{hashlib.sha256(tag.encode()).hexdigest()}"
            return f"{args.name}-id", {
                **args.inputs,
                "digest": digest,
                "ref": f"{tag}@{digest}",
            }
        return super().new_resource(args)

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == CLIENT_CONFIG:
            return {"accessToken": TOKEN, "project": "mock-project", "id": "client"}, []
        return super().call(args)


def _args(build_dir: Path, **overrides: Any) -> ContainerImagesArgs:
    base: dict[str, Any] = dict(
        project="fraud-mlops-test",
        region="us-central1",
        repository_id="fraud-mlops-images",
        source_root=ROOT,
        deletion_protection=False,
        build_dir=build_dir,
    )
    base.update(overrides)
    return ContainerImagesArgs(**base)


def _run(build_dir: Path, **overrides: Any) -> tuple[MockRun, list[ContainerImages]]:
    built: list[ContainerImages] = []

    def program() -> dict[str, Any]:
        images = ContainerImages("images", _args(build_dir, **overrides))
        built.append(images)
        return {"trainer": images.trainer_image, "serving": images.serving_image}

    run = run_with_mocks(program, project="fraud-mlops", stack="test", mocks=ImageMocks())
    return run, built


def _files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def test_container_images_builds_both_from_contexts_holding_exactly_their_closures(
    tmp_path: Path,
) -> None:
    run, _ = _run(tmp_path)

    assert_component_shape(run, "images", "fraud-mlops:gcp:ContainerImages")
    images = {r.name: r for r in run.of_type(IMAGE)}
    assert sorted(images) == ["images-serving", "images-trainer"]
    for spec in (TRAINER, SERVING):
        inputs = images[f"images-{spec.name}"].inputs
        context = Path(inputs["context"]["location"])
        assert context.is_relative_to(tmp_path)
        assert _files(context) == spec.context_files(ROOT)
        for rel in _files(context):
            assert (context / rel).read_bytes() == (ROOT / rel).read_bytes(), rel
        assert inputs["dockerfile"]["location"] == str(ROOT / spec.dockerfile)


def test_container_images_build_linux_amd64_and_push_with_the_deployers_token(
    tmp_path: Path,
) -> None:
    run, _ = _run(tmp_path)

    for image in run.of_type(IMAGE):
        assert image.inputs["platforms"] == ["linux/amd64"]
        assert image.inputs["push"] is True
        assert image.inputs["buildOnPreview"] is False
        (registry,) = image.inputs["registries"]
        assert registry == {
            "address": "us-central1-docker.pkg.dev",
            "username": "oauth2accesstoken",
            "password": TOKEN,
        }
        assert "registries" in image.secret_inputs  # the token never shows in a plan
        (tag,) = image.inputs["tags"]
        name = image.name.removeprefix("images-")
        assert re.fullmatch(rf"{re.escape(PATH)}/{name}:ctx-[0-9a-f]{{20}}", tag)
        (cache_from,) = image.inputs["cacheFrom"]
        assert cache_from["registry"]["ref"] == f"{PATH}/{name}:buildcache"
    (repo,) = run.of_type(REPOSITORY)
    assert (repo.inputs["repositoryId"], repo.inputs["format"]) == ("fraud-mlops-images", "DOCKER")


def test_container_images_outputs_are_digest_references(tmp_path: Path) -> None:
    run, _ = _run(tmp_path)

    images = {r.name.removeprefix("images-"): r for r in run.of_type(IMAGE)}
    for name in ("trainer", "serving"):
        ref = run.outputs[name]
        assert re.match(IMAGE_DIGEST_REF, ref), ref
        digest = hashlib.sha256(images[name].inputs["tags"][0].encode()).hexdigest()
        assert ref == f"{PATH}/{name}@sha256:{digest}"


def test_container_images_unchanged_context_keeps_its_tag_and_directory(tmp_path: Path) -> None:
    first, built_first = _run(tmp_path)
    second, built_second = _run(tmp_path)

    assert sorted(i.inputs["tags"][0] for i in first.of_type(IMAGE)) == sorted(
        i.inputs["tags"][0] for i in second.of_type(IMAGE)
    )
    assert {k: v.context for k, v in built_first[0].staged.items()} == {
        k: v.context for k, v in built_second[0].staged.items()
    }


def test_container_images_prebuilt_refs_skip_the_build(tmp_path: Path) -> None:
    run, built = _run(tmp_path, trainer_image_ref=TRAINER_REF, serving_image_ref=SERVING_REF)

    assert run.of_type(IMAGE) == []
    assert built[0].staged == {}
    assert not [i for i in run.invocations if i.token == CLIENT_CONFIG]
    assert run.outputs == {"trainer": TRAINER_REF, "serving": SERVING_REF}
    assert not list(tmp_path.iterdir()), "nothing staged"


def test_container_images_one_prebuilt_ref_builds_only_the_other(tmp_path: Path) -> None:
    run, _ = _run(tmp_path, serving_image_ref=SERVING_REF)

    assert [r.name for r in run.of_type(IMAGE)] == ["images-trainer"]
    assert run.outputs["serving"] == SERVING_REF
    assert run.outputs["trainer"].startswith(f"{PATH}/trainer@sha256:")


def test_container_images_existing_repository_is_used_not_created(tmp_path: Path) -> None:
    run, built = _run(tmp_path, create_repository=False, readers={"runner": "user:a@example.com"})

    assert run.of_type(REPOSITORY) == []
    assert built[0].repository is None
    assert len(run.of_type(IMAGE)) == 2
    (grant,) = run.of_type("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
    assert grant.inputs["repository"] == "fraud-mlops-images"
    assert grant.inputs["role"] == "roles/artifactregistry.reader"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"project": "Bad_Project"}, "project"),
        ({"region": "moon"}, "region"),
        ({"repository_id": "Images!"}, "repository_id"),
        ({"trainer_image_ref": f"{PATH}/trainer:latest"}, "trainer_image_ref"),
        ({"serving_image_ref": f"{PATH}/serving@sha256:abc"}, "serving_image_ref"),
        ({"create_repository": False, "kms_key_name": "k"}, "kms_key_name"),
        ({"readers": {"runner": "someone"}}, "readers"),
        ({"source_root": Path("/nonexistent")}, "source_root"),
    ],
)
def test_container_images_invalid_args_name_the_field_before_any_resource(
    tmp_path: Path, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=rf"ContainerImagesArgs\.{field}"):
        _args(tmp_path, **overrides).validate()


def test_container_images_unresolvable_import_fails_before_any_resource(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for rel in SERVING.context_files(ROOT) + [SERVING.dockerfile, TRAINER.dockerfile]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((ROOT / rel).read_bytes())
    (root / "app/serving/server.py").write_text("from app.core.gone import X\n")

    with pytest.raises(ValueError, match=r"app/serving/server\.py:1: from app\.core\.gone"):
        _run(tmp_path / "build", source_root=root, trainer_image_ref=TRAINER_REF)
