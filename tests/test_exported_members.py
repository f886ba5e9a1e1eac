"""What ``sidemesh`` exports is a promise: changing it is a decision, made here."""

import sidemesh


def test_public_api() -> None:
    assert sorted(sidemesh.__all__) == [
        "ConfigError",
        "MeshState",
        "SidemeshError",
        "__version__",
        "load_mesh_file",
    ]
    for name in sidemesh.__all__:
        assert hasattr(sidemesh, name), name
