"""Small extra extension points, registered by tests/test_extension_points.py the way a newcomer would."""
