"""Engine layer: model loading, the generation loop, routing aligned to tokens."""
from .builder import NotCausalError, NotMoEError
from .core import BusyError, DecodeError, Engine
from .events import Finished, PromptRouted, TokenInfo, TokenRouted
from ..llama.model import ModelLoadError
from .options import EngineOptions
from .sampling import SamplingSettings, SettingsError
from .text import PromptError

__all__ = ["BusyError", "DecodeError", "Engine", "EngineOptions", "Finished", "ModelLoadError", "NotCausalError", "NotMoEError", "PromptError",
           "PromptRouted", "SamplingSettings", "SettingsError", "TokenInfo", "TokenRouted"]
