"""Two small model families that live outside voxport, declared through its `voxport.models` entry points (see
the dist-info beside this folder): `toyspeech` speaks text at 16 kHz and `toychat` answers audio. voxport has
no line about them; the tests drive both through every door."""

from voxport.models.registry import ModelFamily

TOY_SPEECH = ModelFamily(
    "toyspeech",
    "toy_speech",
    "toy speech at 16 kHz",
    "voxport_toys.models:ToySpeech",
    "voxport_toys.models:make_toy_speech",
    capability="speaks_text",
)
TOY_CHAT = ModelFamily(
    "toychat",
    "toy_chat",
    "toy audio chat",
    "voxport_toys.models:ToyChat",
    "voxport_toys.models:make_toy_chat",
    capability="answers_audio",
)
