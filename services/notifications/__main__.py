from services.notifications.entrypoint import NAME, build
from services.notifications.settings import NotificationSettings
from shared.service import serve

serve(NAME, build, NotificationSettings())
