"""The model card save_pretrained writes, and push_to_hub tested offline with a recording API."""

from __future__ import annotations

import os

import pytest

import gcp.zoo
from gcp.zoo import Provenance


@pytest.fixture(scope="module")
def model():
    return gcp.zoo.create_model("gcp_resnet18", num_classes=5, method="svd", backward="pade", reduced_dim=16,
                                cov_norm=dict(layer="zca", dim=16))


def test_the_card_says_architecture_origin_results_citations_and_license(model, tmp_path):
    gcp.zoo.save_pretrained(model, str(tmp_path / "a"))
    card = (tmp_path / "a" / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\nlibrary_name: timm\n")
    assert "# gcp_resnet18" in card and "`resnet18` backbone" in card and "5 classes" in card
    assert "head: `svd`" in card and "backward mode of its eigendecomposition: `pade`" in card
    assert "reduction to 16 channels" in card and "`zca` layer in place of the batch normalisation `backbone.bn1`" in card
    assert "Untrained, or of an origin not recorded" in card
    assert "MPN-COV (Li et al., ICCV 2017)" in card and "NeurIPS 2019" in card
    trained = Provenance("trained", "by gcp.train on cub", results={"test top-1 (%)": 71.25}, details={"seed": 3})
    gcp.zoo.save_pretrained(model, str(tmp_path / "b"), provenance=trained)
    card = (tmp_path / "b" / "README.md").read_text()
    assert "Trained: by gcp.train on cub" in card and "| test top-1 (%) | 71.25 |" in card and '"seed": 3' in card


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records the calls and the files uploaded."""

    def __init__(self):
        self.calls = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        files = sorted(os.listdir(kwargs["folder_path"]))
        self.calls.append(("upload_folder", dict(kwargs, files=files)))
        return "commit-url"


def test_push_to_hub_uploads_the_saved_folder_in_one_commit(model):
    api = RecordingApi()
    assert gcp.zoo.push_to_hub(model, "me/gcp-r18", private=True, api=api) == "commit-url"
    (create, create_args), (upload, upload_args) = api.calls
    assert create == "create_repo" and create_args == dict(repo_id="me/gcp-r18", private=True, exist_ok=True)
    assert upload == "upload_folder" and upload_args["repo_id"] == "me/gcp-r18"
    assert upload_args["files"] == ["README.md", "config.json", "model.safetensors"]
    assert not os.path.exists(upload_args["folder_path"])  # the temporary folder is gone after the upload
