from django.apps import AppConfig

from realtime import metrics as realtime_metrics


class ComplianceConfig(AppConfig):
    name = "compliance"

    def ready(self) -> None:
        # Imported here: these modules read the models, not loaded before ready().
        from compliance import jobs, metrics, tasks  # noqa: PLC0415
        from compliance.catalog import register_compliance_tables  # noqa: PLC0415

        register_compliance_tables()
        jobs.use_task_queue(tasks.run_analysis.enqueue)
        realtime_metrics.register_collector("analysis jobs", metrics.collect)
