"""A least-recently-used cache bounded by the total size of its values, not their number: the
values it holds (readings of tool results) vary in size by a factor of a hundred."""

from __future__ import annotations

from collections import OrderedDict


class SizedLRU:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.size = 0
        self._items: OrderedDict = OrderedDict()   # key -> (value, size), least recent first

    def get(self, key):
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key, value, size: int) -> None:
        """Cache value (a value larger than the whole capacity is not kept)."""
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= old[1]
        if size > self.capacity:
            return
        self._items[key] = (value, size)
        self.size += size
        while self.size > self.capacity:
            _, (_, dropped) = self._items.popitem(last=False)
            self.size -= dropped

    def __len__(self) -> int:
        return len(self._items)
