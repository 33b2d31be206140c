from django.apps import AppConfig


class WinnowConfig(AppConfig):
    name = "winnow"
