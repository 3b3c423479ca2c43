from services.profiles.entrypoint import NAME, ProfilesSettings, build
from shared.service import serve

serve(NAME, build, ProfilesSettings())
