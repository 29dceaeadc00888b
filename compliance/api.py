"""REST read of address analyses: the caller's own jobs in the application
the request is bound to (``GET /api/compliance/analyses/`` and
``/api/compliance/analyses/<jobId>``), with their result once completed."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from compliance.models import AnalysisJob, JobStatus
from compliance.payloads import AnalysisResponsePayload
from realtime.rest import bound_application


class AnalysisResult(AnalysisResponsePayload):
    """The ``address_analysis_response`` of a completed job (without jobId)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields.pop("jobId", None)


class AnalysisError(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class AnalysisJobSerializer(serializers.ModelSerializer):
    jobId = serializers.CharField(source="id", read_only=True)  # noqa: N815 - the wire's field name
    status = serializers.ChoiceField(JobStatus.values, read_only=True)
    stage = serializers.CharField(read_only=True)
    pct = serializers.IntegerField(read_only=True)
    chain = serializers.CharField(read_only=True)
    address = serializers.CharField(read_only=True)
    hops = serializers.IntegerField(read_only=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)  # noqa: N815
    finishedAt = serializers.DateTimeField(source="finished_at", read_only=True, allow_null=True)  # noqa: N815
    durationMs = serializers.IntegerField(source="duration_ms", read_only=True, allow_null=True)  # noqa: N815
    error = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField()

    class Meta:
        model = AnalysisJob
        fields = [
            "jobId",
            "status",
            "stage",
            "pct",
            "chain",
            "address",
            "hops",
            "createdAt",
            "finishedAt",
            "durationMs",
            "error",
            "result",
        ]
        read_only_fields = fields

    @extend_schema_field(AnalysisError(allow_null=True))
    def get_error(self, job: AnalysisJob) -> dict[str, str] | None:
        if job.status != JobStatus.FAILED:
            return None
        return {"code": job.error_code or "INTERNAL", "message": job.error_message or "the analysis failed"}

    @extend_schema_field(AnalysisResult(allow_null=True))
    def get_result(self, job: AnalysisJob) -> dict[str, Any] | None:
        return job.result if job.status == JobStatus.COMPLETED else None


class JobCursorPagination(CursorPagination):
    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def own_jobs(request: Request) -> QuerySet[AnalysisJob]:
    application_id = bound_application(request)
    return AnalysisJob.objects.filter(user_id=request.user.pk, application_id=application_id)


@extend_schema(
    parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=JobStatus.values, description="Only this status.")]
)
class AnalysisListView(generics.ListAPIView):
    """Your analyses in the bound application, newest first."""

    api_key_scope = "compliance:read"
    serializer_class = AnalysisJobSerializer
    pagination_class = JobCursorPagination

    def get_queryset(self) -> QuerySet[AnalysisJob]:
        queryset = own_jobs(self.request)
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in JobStatus.values:
                raise serializers.ValidationError({"status": [f"Expected one of {', '.join(JobStatus.values)}."]})
            queryset = queryset.filter(status=wanted)
        return queryset


class AnalysisDetailView(generics.GenericAPIView):
    """One of your analyses: its state, and its result once completed."""

    api_key_scope = "compliance:read"
    serializer_class = AnalysisJobSerializer

    @extend_schema(responses={200: AnalysisJobSerializer, 404: OpenApiResponse(AnalysisError)})
    def get(self, request: Request, job_id: str) -> Response:
        job = own_jobs(request).filter(pk=job_id).first()
        if job is None:
            return Response({"code": "NOT_FOUND", "message": "no analysis of yours with that id"}, status=404)
        return Response(AnalysisJobSerializer(job).data)
