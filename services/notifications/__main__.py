from services.notifications.entrypoint import NAME, NotificationSettings, build
from shared.service import serve

serve(NAME, build, NotificationSettings())
