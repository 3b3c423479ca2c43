from services.notifications.entrypoint import SERVICE
from shared.runtime.service import serve

serve(SERVICE)
