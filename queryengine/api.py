"""REST introspection of the query catalog."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from queryengine import services


class CatalogColumnSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(help_text="integer, float, decimal, text, boolean, timestamp, date or json.")
    description = serializers.CharField()


class CatalogTableSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    scope = serializers.CharField(help_text="public, or private: only your rows in the bound application.")
    columns = CatalogColumnSerializer(many=True)


class CatalogSerializer(serializers.Serializer):
    tables = CatalogTableSerializer(many=True)
    functions = serializers.ListField(child=serializers.CharField(), help_text="Functions queries may call.")


class CatalogView(APIView):
    """The tables, columns and types that queries may read."""

    api_key_scope = "query:run"

    @extend_schema(responses=CatalogSerializer)
    def get(self, request: Request) -> Response:
        return Response(services.describe_catalog())
