from rest_framework import serializers


class BroadcastRequest(serializers.Serializer):
    message = serializers.CharField(max_length=2000)
    data = serializers.DictField(required=False)


class Membership(serializers.Serializer):
    applicationId = serializers.CharField()  # noqa: N815 - the wire's field name
    name = serializers.CharField()
    role = serializers.CharField()


class Me(serializers.Serializer):
    userId = serializers.CharField()  # noqa: N815 - the wire's field name
    applicationId = serializers.CharField(allow_null=True)  # noqa: N815 - the wire's field name
    applications = Membership(many=True)


class Broadcast(serializers.Serializer):
    """What was sent to ``application:<id>`` as ``application_broadcast``."""

    applicationId = serializers.CharField()  # noqa: N815 - the wire's field name
    message = serializers.CharField()
    data = serializers.DictField()
    sentBy = serializers.CharField()  # noqa: N815 - the wire's field name
    timestamp = serializers.IntegerField()


class Failure(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    errors = serializers.DictField(required=False)
    retryAfter = serializers.IntegerField(required=False)  # noqa: N815 - the wire's field name
