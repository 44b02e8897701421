"""Comparison of two reports of one model (fake vs real mode)."""


def assert_same(fake, real):
    """Op by op, module by module: the same ops, statuses, costs, parameters and totals."""
    assert [(r.op, r.module, r.status, r.cost) for r in fake.ops] == \
           [(r.op, r.module, r.status, r.cost) for r in real.ops]
    assert fake.total == real.total
    assert fake.unsupported == real.unsupported == {}
    assert fake.params == real.params
    assert [(n.path, n.calls, n.total) for n in fake.modules()] == [(n.path, n.calls, n.total) for n in real.modules()]
