from services.profiles.entrypoint import build
from shared.service import serve
from shared.settings import ServiceSettings

serve("profiles", build, ServiceSettings(http_port=8001))
