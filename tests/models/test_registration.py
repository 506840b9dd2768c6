"""register is pyro.module except inside unregistered, which always restores it."""

import pyro
import pytest

from models import MLP, VAE, Bernoulli, StandardNormal
from models.registration import register, unregistered


def tiny_vae() -> VAE:
    return VAE(StandardNormal(3), MLP(3, 6, hidden=[8]), Bernoulli())


def test_register_is_pyro_module_outside_unregistered():
    pyro.clear_param_store()
    with unregistered():
        register("model", tiny_vae())
        with unregistered():  # nested: still off
            register("model", tiny_vae())
        register("model", tiny_vae())
    assert len(pyro.get_param_store()) == 0
    register("model", tiny_vae())
    assert "model$$$decoder.0.weight" in pyro.get_param_store()


def test_registration_comes_back_after_an_error():
    pyro.clear_param_store()
    with pytest.raises(RuntimeError, match="inside"), unregistered():
        raise RuntimeError("raised inside")
    register("model", tiny_vae())
    assert "model$$$decoder.0.weight" in pyro.get_param_store()
