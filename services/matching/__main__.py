from services.matching.entrypoint import SERVICE
from shared.runtime.service import serve

serve(SERVICE)
