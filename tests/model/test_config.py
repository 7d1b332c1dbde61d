import pytest

from lstmserve.model.config import LSTMConfig
from lstmserve.model.errors import ConfigError


def test_round_trips_through_json():
    config = LSTMConfig(
        input_size=8,
        hidden_sizes=[32, 16],
        head="classify_last",
        num_outputs=3,
        labels=["a", "b", "c"],
        output_keep_prob=0.8,
    )
    again = LSTMConfig.from_json(config.to_json())
    assert again == config
    assert again.hidden_sizes == (32, 16) and again.num_layers == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hidden_sizes": []}, "hidden_sizes is empty"),
        ({"hidden_sizes": [16, 0]}, "hidden_sizes must be positive integers"),
        ({"hidden_sizes": [-4]}, "hidden_sizes must be positive integers"),
        ({"input_size": 0}, "input_size must be a positive integer"),
        ({"output_keep_prob": 0.0}, "output_keep_prob must be in (0, 1]"),
        ({"input_keep_prob": 1.5}, "input_keep_prob must be in (0, 1]"),
        ({"head": "softmax"}, "head must be one of none, classify_last, per_step"),
        ({"head": "classify_last"}, "needs num_outputs >= 1"),
        ({"num_outputs": 3}, "num_outputs must be 0 when head is 'none'"),
        ({"head": "per_step", "num_outputs": 2, "labels": ["x"]}, "1 labels given for num_outputs=2"),
    ],
)
def test_refuses_a_config_that_cannot_work(fields, message):
    with pytest.raises(ConfigError) as caught:
        LSTMConfig(**{"input_size": 4, **fields})
    assert message in str(caught.value)


def test_from_dict_names_unknown_and_missing_fields():
    with pytest.raises(ConfigError, match="unknown LSTMConfig fields: layers"):
        LSTMConfig.from_dict({"input_size": 4, "layers": 2})
    with pytest.raises(ConfigError, match="incomplete LSTMConfig"):
        LSTMConfig.from_dict({"hidden_sizes": [4]})
