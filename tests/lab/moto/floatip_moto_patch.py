"""Where moto 5.2.5's EC2 differs from AWS in ways floatip depends on, and the fixes.

Each was checked against moto itself before patching (see the lab's tests/ec2.rs):
- AssignPrivateIpAddresses ignored AllowReassignment: the address ended up on BOTH ENIs, and
  without the flag an address held by another ENI was accepted instead of refused. AWS moves the
  address in the same call, or refuses with InvalidParameterValue.
- Any address was accepted, even outside the ENI's subnet. AWS refuses with InvalidParameterValue.
- UnassignPrivateIpAddresses of an address the ENI does not hold succeeded silently; AWS refuses,
  and floatip must see that to stay honest about who holds the address.
- AssignedPrivateIpAddresses in the reply listed every address of the ENI, not the ones assigned.
- Filter addresses.private-ip-address on DescribeNetworkInterfaces matched the primary address only,
  and network-interface.addresses.private-ip-address on DescribeInstances was not implemented (the
  server answered 500). On AWS both match secondary addresses too: that is how floatip finds the
  current holder of a floating IP.
- Elastic IPs: AssociateAddress ignored PrivateIpAddress (DescribeAddresses then showed the ENI's
  primary address), reassociation left the old ENI showing the public IP, an unassociated address
  answered NetworkInterfaceId "" and InstanceId "" instead of leaving them out, and moving a
  secondary address with AllowReassignment left its Elastic IP behind (AWS moves it along).
- Security groups: an ENI attached to an instance listed the instance's launch groups besides
  its own (on AWS each ENI has only its own, which is why floatip gives the floating ENI the
  primary ENI's groups), and CreateNetworkInterface and ModifyNetworkInterfaceAttribute accepted
  a group ID that does not exist (the first invented the group, the second broke every later
  DescribeNetworkInterfaces). AWS refuses with InvalidGroup.NotFound.

The error codes are AWS's (SDKs and floatip match on them); the message texts are written here.
"""

import ipaddress

from moto.core.responses import ActionResult, EmptyResult
from moto.ec2 import utils as ec2_utils
from moto.ec2.exceptions import EC2ClientError, InvalidSecurityGroupNotFoundError
from moto.ec2.models.elastic_ip_addresses import ElasticAddress, ElasticAddressBackend
from moto.ec2.models.elastic_network_interfaces import NetworkInterface, NetworkInterfaceBackend
from moto.ec2.models.instances import Instance
from moto.ec2.responses.elastic_ip_addresses import ElasticIPAddresses
from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces


def _invalid(message):
    return EC2ClientError("InvalidParameterValue", message)


def _addresses(eni):
    return [item["PrivateIpAddress"] for item in eni.private_ip_addresses]


def _holder(backend, eni, address):
    """The other ENI in the same subnet that holds `address`, if any (VPCs may overlap)."""
    for other in backend.enis.values():
        if other is not eni and other.subnet.id == eni.subnet.id and address in _addresses(other):
            return other
    return None


_original_assign = NetworkInterfaceBackend.assign_private_ip_addresses


def assign_private_ip_addresses(
    self, eni_id, private_ip_addresses=None, secondary_ips_count=None, allow_reassignment=False
):
    eni = self.get_network_interface(eni_id)
    subnet = ipaddress.ip_network(eni.subnet.cidr_block)
    moves = []
    # Check every address before changing anything: AWS applies the call whole or not at all.
    for address in private_ip_addresses or []:
        try:
            inside = ipaddress.ip_address(address) in subnet
        except ValueError:
            raise _invalid(f"Invalid value '{address}' for IP address")
        if not inside:
            raise _invalid(f"Address {address} does not fall within the subnet's address range")
        holder = _holder(self, eni, address)
        if holder is None:
            continue
        if not allow_reassignment:
            raise _invalid(f"Address {address} is assigned to another interface {holder.id}")
        if holder.private_ip_address == address:
            raise _invalid(f"Address {address} is the primary address of {holder.id}")
        moves.append((holder, address))
    for holder, address in moves:
        holder.private_ip_addresses = [
            item for item in holder.private_ip_addresses if item["PrivateIpAddress"] != address
        ]
        for eip in self.addresses:
            if eip.eni is holder and eip.private_ip_address == address:
                holder.public_ip, eni.public_ip, eip.eni = None, eip.public_ip, eni
    return _original_assign(self, eni_id, private_ip_addresses, secondary_ips_count)


_original_unassign = NetworkInterfaceBackend.unassign_private_ip_addresses


def unassign_private_ip_addresses(self, eni_id, private_ip_address=None):
    eni = self.get_network_interface(eni_id)
    if any(address not in _addresses(eni) for address in private_ip_address or []):
        raise _invalid(f"Some of the specified addresses are not assigned to interface {eni.id}")
    return _original_unassign(self, eni_id, private_ip_address)


def assign_private_ip_addresses_response(self):
    eni_id = self._get_param("NetworkInterfaceId")
    count = self._get_int_param("SecondaryPrivateIpAddressCount", 0)
    wanted = self._get_param("PrivateIpAddresses", [])
    allow = self._get_bool_param("AllowReassignment", False)
    before = set(_addresses(self.ec2_backend.get_network_interface(eni_id)))
    eni = self.ec2_backend.assign_private_ip_addresses(eni_id, wanted, count, allow)
    assigned = wanted or [a for a in _addresses(eni) if a not in before]
    return ActionResult(
        {
            "NetworkInterfaceId": eni.id,
            "AssignedPrivateIpAddresses": [{"PrivateIpAddress": a} for a in assigned],
        }
    )


def unassign_private_ip_addresses_response(self):
    eni_id = self._get_param("NetworkInterfaceId")
    addresses = self._get_param("PrivateIpAddresses", [])
    self.ec2_backend.unassign_private_ip_addresses(eni_id, addresses)
    return EmptyResult()


_original_get_all_enis = NetworkInterfaceBackend.get_all_network_interfaces


def get_all_network_interfaces(self, eni_ids=None, filters=None):
    filters = dict(filters or {})
    wanted = filters.pop("addresses.private-ip-address", None)
    enis = _original_get_all_enis(self, eni_ids, filters)
    if wanted is None:
        return enis
    # Several values in one filter mean "any of them", as on AWS.
    return [eni for eni in enis if set(wanted) & set(_addresses(eni))]


_original_associate = ElasticAddressBackend.associate_address


def associate_address(self, *args, **kwargs):
    before = {eip.public_ip: eip.eni for eip in self.addresses}
    eip = _original_associate(self, *args, **kwargs)
    old = before.get(eip.public_ip)
    if old is not None and old is not eip.eni:
        old.public_ip = None
    eip.floatip_private_ip = None  # the response handler sets it when the call named one
    return eip


_original_associate_response = ElasticIPAddresses.associate_address


def associate_address_response(self):
    result = _original_associate_response(self)
    private_ip = self._get_param("PrivateIpAddress")
    if private_ip:
        for eip in self.ec2_backend.addresses:
            if eip.association_id == result.result["AssociationId"]:
                eip.floatip_private_ip = private_ip
    return result


def _eip_private_ip(eip):
    if eip.eni is None:
        return None
    return getattr(eip, "floatip_private_ip", None) or eip.eni.private_ip_address


_original_eip_filter = ElasticAddress.get_filter_value


def eip_filter_value(self, filter_name, method_name=None):
    if filter_name == "private-ip-address":
        return self.private_ip_address
    return _original_eip_filter(self, filter_name, method_name)


def _instance_private_addresses(instance):
    return [a for nic in instance.nics.values() for a in _addresses(nic)]


def _check_groups(backend, group_ids):
    for group_id in group_ids or []:
        if backend.get_security_group_from_id(group_id) is None:
            raise InvalidSecurityGroupNotFoundError(group_id)


_original_create_eni = NetworkInterfaceBackend.create_network_interface


def create_network_interface(
    self, subnet, private_ip_address, private_ip_addresses=None, group_ids=None, *args, **kwargs
):
    _check_groups(self, group_ids)
    return _original_create_eni(
        self, subnet, private_ip_address, private_ip_addresses, group_ids, *args, **kwargs
    )


_original_modify_eni = NetworkInterfaceBackend.modify_network_interface_attribute


def modify_network_interface_attribute(self, eni_id, group_ids, *args, **kwargs):
    _check_groups(self, group_ids)
    return _original_modify_eni(self, eni_id, group_ids, *args, **kwargs)


NetworkInterfaceBackend.assign_private_ip_addresses = assign_private_ip_addresses
NetworkInterfaceBackend.unassign_private_ip_addresses = unassign_private_ip_addresses
NetworkInterfaceBackend.get_all_network_interfaces = get_all_network_interfaces
NetworkInterfaceBackend.create_network_interface = create_network_interface
NetworkInterfaceBackend.modify_network_interface_attribute = modify_network_interface_attribute
# Each ENI's own groups only, as on AWS, attached or not.
NetworkInterface.group_set = property(lambda eni: eni._group_set)
ElasticNetworkInterfaces.assign_private_ip_addresses = assign_private_ip_addresses_response
ElasticNetworkInterfaces.unassign_private_ip_addresses = unassign_private_ip_addresses_response
# DescribeInstances filters map a filter name to an attribute path; a list value matches when any
# element is among the filter's values.
Instance.floatip_private_addresses = property(_instance_private_addresses)
ec2_utils.filter_dict_attribute_mapping["network-interface.addresses.private-ip-address"] = (
    "floatip_private_addresses"
)
ElasticAddressBackend.associate_address = associate_address
ElasticIPAddresses.associate_address = associate_address_response
ElasticAddress.private_ip_address = property(_eip_private_ip)
ElasticAddress.get_filter_value = eip_filter_value
# None is left out of the reply, as AWS does for an address with no association.
ElasticAddress.network_interface_id = property(lambda eip: eip.eni.id if eip.eni else None)
ElasticAddress.instance_id = property(lambda eip: eip.instance.id if eip.instance else None)
