"""Comparison of two reports of one model (fake vs real mode)."""


def assert_same(fake, real):
    """Op by op, module by module: the same ops, statuses, costs, parameters and totals."""
    assert [(r.op, r.module, r.status, r.cost) for r in fake.ops] == \
           [(r.op, r.module, r.status, r.cost) for r in real.ops]
    assert fake.total == real.total
    assert fake.unsupported == real.unsupported == {}
    assert fake.params == real.params
    assert [(n.path, n.calls, n.total) for n in fake.modules()] == [(n.path, n.calls, n.total) for n in real.modules()]


def compute(cost) -> tuple:
    """The arithmetic counts of a Cost, without bytes."""
    return cost.macs, cost.dots, cost.elementwise, cost.transcendental


def assert_same_compute(fake, real):
    """Module by module, the same arithmetic; bytes and free ops may differ."""
    assert fake.unsupported == real.unsupported == {}
    assert fake.params == real.params
    assert [(n.path, n.calls, compute(n.total)) for n in fake.modules()] == \
           [(n.path, n.calls, compute(n.total)) for n in real.modules()]
