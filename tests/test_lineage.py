def test_x():
    import runner  # noqa: F401
