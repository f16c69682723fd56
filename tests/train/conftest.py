import pytest

from tests import _fixtures


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    return _fixtures.image_folder(str(tmp_path_factory.mktemp("imagenet")))


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    return _fixtures.cub(str(tmp_path_factory.mktemp("cub")))
