"""Real source models, made by the real frameworks: `python sources.py OUT` writes every file the import
tests read, plus OUT/expected/NAME.npz: the framework's own answer for a fixed input (zero state, full
lengths) that the served model must give. Run in a subprocess: TF1 graphs, Keras and tf_keras stay out
of the test process. Small models, random weights (a trained one: examples/tf1_digits.py's test).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.compat.v1's cells (and tf_keras for Keras 2 files)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

INPUTS = 5
X = np.random.default_rng(7).standard_normal((3, 10, INPUTS)).astype(np.float32)  # (batch, time, features)


def expect(out: Path, name: str, **values: np.ndarray) -> None:
    (out / "expected").mkdir(exist_ok=True)
    np.savez(
        out / "expected" / f"{name}.npz", x=X, **{k: np.asarray(v, np.float32) for k, v in values.items()}
    )


def torch_sources(out: Path) -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Tagger(nn.Module):  # nn.LSTM + nn.Linear inside a module; time-major LSTM
        def __init__(self):
            super().__init__()
            self.encoder = nn.LSTM(INPUTS, 9, num_layers=2)
            self.out = nn.Linear(9, 4)

    tagger = Tagger().eval()
    torch.save(tagger.state_dict(), out / "torch_tagger.pt")
    with torch.no_grad():
        y, _ = tagger.encoder(torch.from_numpy(X).transpose(0, 1))
        expect(out, "torch_tagger", logits=tagger.out(y.transpose(0, 1)).numpy())

    stacked = nn.ModuleDict(
        {
            "first": nn.LSTM(INPUTS, 6, batch_first=True, bias=False),
            "second": nn.LSTM(6, 3, batch_first=True, bias=False),
        }
    ).eval()
    torch.save({"state_dict": stacked.state_dict(), "epoch": 3}, out / "torch_stacked.pt")
    with torch.no_grad():
        y, _ = stacked["second"](stacked["first"](torch.from_numpy(X))[0])
        expect(out, "torch_stacked", output=y.numpy())

    # Registered (and so saved) in forward order, named against the alphabet.
    ordered = nn.ModuleDict(
        {"zeta": nn.LSTM(INPUTS, 6, batch_first=True), "alpha": nn.LSTM(6, 3, batch_first=True)}
    )
    torch.save(ordered.eval().state_dict(), out / "torch_ordered.pt")
    with torch.no_grad():
        y, _ = ordered["alpha"](ordered["zeta"](torch.from_numpy(X))[0])
        expect(out, "torch_ordered", output=y.numpy())
    # An nn.ModuleList of single-layer LSTMs, as LSTMStack itself: chained in index order (2 before 10).
    listed = nn.ModuleList([nn.LSTM(INPUTS if i == 0 else 3, 3, batch_first=True) for i in range(11)]).eval()
    torch.save(listed.state_dict(), out / "torch_module_list.pt")
    with torch.no_grad():
        y = torch.from_numpy(X)
        for lstm in listed:
            y = lstm(y)[0]
        expect(out, "torch_module_list", output=y.numpy())
    # A seq2seq module: `--prefix encoder` imports its encoder alone.
    seq2seq = nn.ModuleDict(
        {"encoder": nn.LSTM(INPUTS, 4, batch_first=True), "decoder": nn.LSTM(4, 4), "fc": nn.Linear(4, 3)}
    ).eval()
    torch.save(seq2seq.state_dict(), out / "torch_seq2seq.pt")
    with torch.no_grad():
        expect(out, "torch_encoder", output=seq2seq["encoder"](torch.from_numpy(X))[0].numpy())

    torch.save(nn.GRU(INPUTS, 4).state_dict(), out / "torch_gru.pt")
    torch.save(nn.LSTM(INPUTS, 4, bidirectional=True).state_dict(), out / "torch_bidirectional.pt")
    torch.save(nn.LSTM(INPUTS, 4, proj_size=2).state_dict(), out / "torch_proj.pt")
    embedded = nn.ModuleDict({"embed": nn.Embedding(10, INPUTS), "lstm": nn.LSTM(INPUTS, 4)})
    torch.save(embedded.state_dict(), out / "torch_embedding.pt")


def keras_sources(out: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    layers.LSTM(2)  # takes the name "lstm": the classifier's default names then differ from their places
    classifier = keras.Sequential(
        [
            keras.Input((None, INPUTS)),
            layers.Masking(0.0),
            layers.LSTM(8, return_sequences=True, name="encoder"),
            layers.Dropout(0.3),
            layers.LSTM(6),
            layers.Dense(3, activation="softmax", name="classes"),
        ]
    )
    classifier.save(out / "keras_classifier.keras")
    expect(out, "keras_classifier", probabilities=classifier(X))
    inputs = keras.Input((None, INPUTS))
    hidden = layers.LSTM(7, return_sequences=True, use_bias=False)(inputs)
    tagger = keras.Model(inputs, layers.TimeDistributed(layers.Dense(2))(hidden))
    tagger.save(out / "keras_tagger.h5")
    expect(out, "keras_tagger", logits=tagger(X))

    refused = {
        "gru": [layers.GRU(4)],
        "bidirectional": [layers.Bidirectional(layers.LSTM(4))],
        "go_backwards": [layers.LSTM(4, go_backwards=True)],
        "relu": [layers.LSTM(4, activation="relu")],
        "hard_sigmoid": [layers.LSTM(4, recurrent_activation="hard_sigmoid")],
        "not_stacked": [layers.LSTM(4), layers.RepeatVector(2), layers.LSTM(3)],
        "conv": [layers.Conv1D(4, 3), layers.LSTM(3)],
    }
    for name, stack in refused.items():
        keras.Sequential([keras.Input((None, INPUTS)), *stack]).save(out / f"keras_{name}.keras")

    import tf_keras  # Keras 2, as TF 2.15 and older saved it

    legacy = tf_keras.Sequential([tf_keras.Input((None, INPUTS)), tf_keras.layers.LSTM(5)])
    legacy.save(out / "keras2_plain.h5")
    expect(out, "keras2_plain", final_h=legacy(X).numpy())


def tf1_sources(out: Path) -> None:
    import tensorflow as tf

    tf1 = tf.compat.v1
    cells = tf1.nn.rnn_cell

    def save(name, make_cell, head=None, multi=True, bidirectional=False, var_list=None, meta=True):
        graph = tf.Graph()
        with graph.as_default():
            tf1.set_random_seed(1)
            x = tf1.placeholder(tf.float32, [None, None, INPUTS])
            lengths = tf1.placeholder(tf.int32, [None])
            if bidirectional:
                tf1.nn.bidirectional_dynamic_rnn(make_cell(4), make_cell(4), x, lengths, dtype=tf.float32)
                output = state = None
            else:
                cell = cells.MultiRNNCell([make_cell(6), make_cell(4)]) if multi else make_cell(4)
                output, state = tf1.nn.dynamic_rnn(cell, x, sequence_length=lengths, dtype=tf.float32)
            answer = {}
            if head == "classify_last":
                dense = tf1.layers.Dense(3, bias_initializer=tf1.random_normal_initializer(), name="head")
                answer["logits"] = dense(state[-1].h)
            elif head == "per_step":
                dense = tf1.layers.Dense(2, bias_initializer=tf1.random_normal_initializer(), name="head")
                answer["logits"] = dense(output)
            elif output is not None:
                answer["output"] = output
            with tf1.Session(graph=graph) as session:
                session.run(tf1.global_variables_initializer())
                folder = out / name
                saver = tf1.train.Saver(var_list=var_list() if var_list else None)
                saver.save(session, str(folder / "model.ckpt"), write_meta_graph=meta)
                if answer:
                    got = session.run(answer, {x: X, lengths: np.full(len(X), X.shape[1])})
                    expect(out, name, **got)

    save("tf1_basic", lambda n: cells.BasicLSTMCell(n, forget_bias=1.0), head="classify_last")
    save("tf1_single", lambda n: cells.LSTMCell(n, forget_bias=0.5), head="per_step", multi=False)
    save("tf1_peepholes", lambda n: cells.LSTMCell(n, use_peepholes=True))
    save("tf1_proj", lambda n: cells.LSTMCell(n, num_proj=3), multi=False)
    save("tf1_clip", lambda n: cells.LSTMCell(n, cell_clip=2.0))
    save("tf1_relu", lambda n: cells.BasicLSTMCell(n, activation=tf.nn.relu))
    save("tf1_gru", lambda n: cells.GRUCell(n))
    save("tf1_bidirectional", lambda n: cells.BasicLSTMCell(n), bidirectional=True)
    save(
        "tf1_missing",
        lambda n: cells.BasicLSTMCell(n),
        var_list=lambda: [v for v in tf1.global_variables() if "cell_1" not in v.name],
    )
    # TF 1.0-1.2 named a cell's variables weights and biases (kernel and bias since 1.3).
    save(
        "tf1_old_names",
        lambda n: cells.BasicLSTMCell(n),
        head="classify_last",
        meta=False,
        var_list=lambda: {
            v.op.name.replace("/kernel", "/weights").replace("/bias", "/biases"): v
            for v in tf1.global_variables()
        },
    )
    layer_norm(out / "tf1_layer_norm")
    two_scopes(out)


def two_scopes(out: Path) -> None:
    """An encoder and a decoder in one checkpoint, under their own scopes (--scope picks one)."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(2)
        x = tf1.placeholder(tf.float32, [None, None, INPUTS])
        cells = [tf1.nn.rnn_cell.BasicLSTMCell(n, forget_bias=0.0) for n in (5, 3)]
        encoded, state = tf1.nn.dynamic_rnn(
            tf1.nn.rnn_cell.MultiRNNCell(cells), x, dtype=tf.float32, scope="encoder"
        )
        tf1.nn.dynamic_rnn(
            tf1.nn.rnn_cell.BasicLSTMCell(3), encoded, initial_state=state[-1], scope="decoder"
        )
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(session, str(out / "tf1_two_scopes" / "model.ckpt"))
            expect(out, "tf1_encoder", output=session.run(encoded, {x: X}))


def layer_norm(folder: Path) -> None:
    """The variables of tf.contrib.rnn.LayerNormBasicLSTMCell (contrib left TensorFlow in 2.0), by Saver."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        scope = "rnn/layer_norm_basic_lstm_cell"
        for name, shape in (
            ("kernel", [INPUTS + 4, 16]),
            ("bias", [16]),
            ("input/gamma", [4]),
            ("input/beta", [4]),
            ("state/gamma", [4]),
            ("state/beta", [4]),
        ):
            tf1.get_variable(f"{scope}/{name}", shape)
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(session, str(folder / "model.ckpt"))


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    torch_sources(target)
    keras_sources(target)
    tf1_sources(target)
    print("made", len(list(target.iterdir())), "sources in", target)
