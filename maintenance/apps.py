from django.apps import AppConfig


class MaintenanceConfig(AppConfig):
    name = "maintenance"

    def ready(self):
        from labcore.serving import on_serve
        from maintenance import scheduler

        # Every serving process runs the scheduler; only the lease holder acts.
        on_serve(scheduler.start)
