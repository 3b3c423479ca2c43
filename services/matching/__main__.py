from services.matching.entrypoint import NAME, MatchingSettings, build
from shared.service import serve

serve(NAME, build, MatchingSettings())
