"""Engine layer: model loading, the generation loop, routing aligned to tokens."""
from .core import BusyError, DecodeError, Engine, NotCausalError, NotMoEError
from .events import Finished, PromptRouted, TokenInfo, TokenRouted
from ..llama.model import ModelLoadError
from .sampling import SamplingSettings, SettingsError
from .text import PromptError

__all__ = ["BusyError", "DecodeError", "Engine", "Finished", "ModelLoadError", "NotCausalError", "NotMoEError", "PromptError",
           "PromptRouted", "SamplingSettings", "SettingsError", "TokenInfo", "TokenRouted"]
