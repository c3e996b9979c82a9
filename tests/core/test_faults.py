"""The fault-injection layer itself: the small disk fills, the read-only folder refuses root."""
import errno

import pytest

from faults import read_only_dir, small_disk


def test_the_small_disk_fills_with_enospc():
    with small_disk(64) as d:
        with pytest.raises(OSError) as e:
            (d / "x").write_bytes(b"x" * 200_000)
        assert e.value.errno == errno.ENOSPC

def test_the_read_only_folder_refuses_even_root():
    with read_only_dir() as d:
        with pytest.raises(OSError) as e:
            (d / "x").write_bytes(b"x")
        assert e.value.errno == errno.EROFS
