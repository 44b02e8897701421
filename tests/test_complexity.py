"""The survey's complexity table (Vaswani et al. 2017, Table 1) from traces: MACs per layer as
exact polynomials in n (length), d (width), k (kernel), and sequential operations as the
longest chain of dependent ops."""

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.complexity import leading, longest_chain, polynomial, show, survey_table


@pytest.fixture(scope="module")
def table():
    return {row["layer"].strip(): row for row in survey_table()}


def test_complexity_per_layer(table):
    # encoder layer, d_ff = 4·d: q, k, v, out projections 4·n·d², MLP 2·n·d·4d = 8·n·d²,
    # attention scores and weighted sum n·n·d each
    assert table["Transformer encoder layer"]["macs_terms"] == {(2, 1): 2, (1, 2): 4 + 8}
    assert table["its self-attention"]["macs_terms"] == {(2, 1): 2, (1, 2): 4}
    # LSTM, input and hidden width d: 4 gates × (d·d input + d·d hidden) per step, n steps
    assert table["LSTM (oneDNN kernel)"]["macs_terms"] == {(1, 2): 4 * 2}
    assert table["LSTM (reference cells)"]["macs_terms"] == {(1, 2): 4 * 2}
    # Conv1d d → d, kernel k, padding k // 2 (length kept): n·d·d·k
    assert table["Conv1d, kernel k"]["macs_terms"] == {(1, 2, 1): 1}
    assert table["Conv1d, kernel k"]["complexity"] == "n·d²·k"
    assert table["LSTM (oneDNN kernel)"]["complexity"] == "n·d²"
    assert "n²·d" in table["its self-attention"]["complexity"]


def test_sequential_operations(table):
    # constant in n for attention and convolution, linear for the recurrence
    enc = table["Transformer encoder layer"]["chain_terms"]
    assert set(enc) == {(0,)} and table["Transformer encoder layer"]["sequential"] == "1"
    assert table["Conv1d, kernel k"]["chain_terms"] == {(0,): 1}               # one op: the convolution
    # the fused kernel is one event of n dependent cell steps; the reference cells show them op by op
    assert table["LSTM (oneDNN kernel)"]["chain_terms"][(1,)] == 1
    assert table["LSTM (reference cells)"]["chain_terms"][(1,)] >= 2            # several ops per step
    assert table["LSTM (oneDNN kernel)"]["sequential"] == table["LSTM (reference cells)"]["sequential"] == "n"


def test_chain_follows_data_not_program_order():
    class TwoBranches(nn.Module):
        def forward(self, x):
            a = torch.relu(torch.relu(torch.relu(x)))     # a chain of 3
            b = torch.sigmoid(x)                          # independent of a: chain 1
            return a + b                                  # joins: 3 + 1

    report = flopmeter.count(TwoBranches(), torch.randn(2, 3), options=flopmeter.Options(convention="all"))
    assert longest_chain(report) == 4


def test_chain_sees_in_place_writes_through_views():
    class WriteThenRead(nn.Module):
        def forward(self, x):
            out = torch.zeros(2, 4)                       # chain 1
            out[:, :2].copy_(torch.relu(torch.relu(x)))   # relu 1, relu 2, copy_ into a view of out: 3
            return out.sum()                              # reads out's storage after the write: 4

    report = flopmeter.count(WriteThenRead(), torch.randn(2, 2), options=flopmeter.Options(convention="all"))
    # by tensor alone, sum would read `out` as zeros left it (chain 2) and the longest chain would be 3
    assert longest_chain(report) == 4


def test_polynomial_printing():
    assert show({(2, 1): 2, (1, 2): 12}, "nd") == "2·n²·d + 12·n·d²"
    assert leading({(2, 1): 2, (1, 2): 12, (1, 0): 5}, "nd") == "n²·d + n·d²"
    assert polynomial(lambda a, b: 3 * a * a * b + 7, [([1, 2, 3], 5), ([1, 2], 4)]) == {(2, 1): 3, (0, 0): 7}
