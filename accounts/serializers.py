from rest_framework import serializers


class BroadcastRequest(serializers.Serializer):
    message = serializers.CharField(max_length=2000)
    data = serializers.DictField(required=False)
