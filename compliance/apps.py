from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"

    def ready(self) -> None:
        # Imported here: the catalog reads the models, not loaded before ready().
        from compliance.catalog import register_compliance_tables

        register_compliance_tables()
