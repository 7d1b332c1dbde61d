import pytest
import torch

from lstmserve.model.config import LSTMConfig
from lstmserve.model.stack import LSTMStack


def make_stack(head="none", num_outputs=0, hidden_sizes=(6, 4), **fields) -> LSTMStack:
    torch.manual_seed(0)
    config = LSTMConfig(input_size=3, hidden_sizes=hidden_sizes, head=head, num_outputs=num_outputs, **fields)
    return LSTMStack(config).eval()


def random_state(stack: LSTMStack, batch: int):
    return [(torch.randn(batch, size), torch.randn(batch, size)) for size in stack.config.hidden_sizes]


def test_each_layer_has_its_own_hidden_size_and_zero_state():
    stack = make_stack(hidden_sizes=(7, 5, 2))
    state = stack.zero_state(4)
    assert [(c.shape, h.shape) for c, h in state] == [((4, 7), (4, 7)), ((4, 5), (4, 5)), ((4, 2), (4, 2))]
    assert all(not c.any() and not h.any() for c, h in state)
    result = stack(torch.randn(4, 6, 3))
    assert result.output.shape == (4, 6, 2)
    assert [tuple(c.shape) for c, _ in result.state] == [(4, 7), (4, 5), (4, 2)]
    assert result.logits is None


def test_absent_state_means_zero_state():
    stack = make_stack()
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        assert torch.equal(stack(x).output, stack(x, stack.zero_state(2)).output)


def test_forget_gate_starts_biased_open_and_other_biases_at_zero():
    stack = make_stack(forget_bias=1.0)
    for lstm in stack.layers:
        hidden = lstm.hidden_size
        bias = lstm.bias_ih_l0 + lstm.bias_hh_l0  # gate order i, f, g, o
        assert torch.equal(bias[hidden : 2 * hidden], torch.ones(hidden))
        assert not bias[:hidden].any() and not bias[2 * hidden :].any()


@pytest.mark.parametrize("head", ["none", "per_step", "classify_last"])
def test_ragged_rows_equal_each_row_run_alone(head):
    stack = make_stack(head=head, num_outputs=0 if head == "none" else 5)
    lengths = torch.tensor([0, 1, 7, 4, 0, 6])
    x, state = torch.randn(6, 7, 3), random_state(stack, 6)
    with torch.no_grad():
        batched = stack(x, state, lengths)
        for row, length in enumerate(lengths.tolist()):
            row_state = [(c[row : row + 1], h[row : row + 1]) for c, h in state]
            # Past its length a row's output (and per-step logits) are zero.
            assert not batched.output[row, length:].any()
            if head == "per_step":
                assert not batched.logits[row, length:].any()
            if length == 0:  # a 0-length row keeps its state unchanged
                for (c, h), (c0, h0) in zip(batched.state, row_state):
                    assert torch.equal(c[row], c0[0]) and torch.equal(h[row], h0[0])
                continue
            alone = stack(x[row : row + 1, :length], row_state)
            torch.testing.assert_close(batched.output[row, :length], alone.output[0], atol=1e-6, rtol=0)
            for (c, h), (c1, h1) in zip(batched.state, alone.state):
                torch.testing.assert_close(c[row], c1[0], atol=1e-6, rtol=0)
                torch.testing.assert_close(h[row], h1[0], atol=1e-6, rtol=0)
            if head == "classify_last":
                torch.testing.assert_close(batched.logits[row], alone.logits[0], atol=1e-6, rtol=0)


def test_feeding_back_the_state_chunk_by_chunk_equals_one_call():
    stack = make_stack(head="per_step", num_outputs=3)
    x = torch.randn(3, 20, 3)
    with torch.no_grad():
        whole = stack(x)
        state, outputs = None, []
        for start, stop in ((0, 1), (1, 8), (8, 9), (9, 20)):
            part = stack(x[:, start:stop], state)
            outputs.append(part.output)
            state = part.state
    torch.testing.assert_close(torch.cat(outputs, dim=1), whole.output, atol=1e-6, rtol=0)
    for (c, h), (c1, h1) in zip(state, whole.state):
        torch.testing.assert_close(c, c1, atol=1e-6, rtol=0)
        torch.testing.assert_close(h, h1, atol=1e-6, rtol=0)


def test_dropout_only_while_training():
    stack = make_stack(input_keep_prob=0.5, output_keep_prob=0.5)
    x = torch.randn(4, 6, 3)
    with torch.no_grad():
        assert torch.equal(stack(x).output, stack(x).output)  # eval: deterministic
        stack.train()
        torch.manual_seed(1)
        first = stack(x).output
        torch.manual_seed(2)
        assert not torch.equal(first, stack(x).output)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s(torch.randn(2, 5, 4)), r"input must be \(batch, time, 3\), got \(2, 5, 4\)"),
        (lambda s: s(torch.randn(2, 3)), r"input must be \(batch, time, 3\)"),
        (lambda s: s(torch.randn(2, 5, 3), s.zero_state(2)[:1]), "state has 1 layers, the model has 2"),
        (lambda s: s(torch.randn(2, 5, 3), s.zero_state(3)), r"state c of layer 0 must be \(2, 6\)"),
        (lambda s: s(torch.randn(2, 5, 3), None, torch.tensor([5, 6])), r"lengths must be in \[0, 5\]"),
        (lambda s: s(torch.randn(2, 5, 3), None, torch.tensor([1])), r"lengths must be \(2,\)"),
    ],
)
def test_bad_shapes_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(make_stack())
